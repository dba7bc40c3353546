"""Training throughput (samples/s) of one lag head, default and full-size, with the ridge baseline
timed in the same run.

usage: python bench/train_throughput.py [--steps 20] [--repeats 3] [--out bench/results/train_throughput.json]
       python bench/train_throughput.py --device cuda [--out bench/results/train_throughput_cuda.json]

Inputs are random tensors of the pipeline's shapes (the time per step does not depend on the
values). `full` is the roadmap's full-size setting: history 192, d_model 192, 4 blocks, every
engineered feature (about 4,500 on the default market). Reports the median over repeats.

With `--device cuda` it measures every combination of size, precision (fp32, TF32, bf16) and
where the windows live (`host`: each batch gathered on the CPU, pinned and copied, as with
`train.windows_on_device: false`; `device`: the matrices on the GPU, batches gathered there),
with the peak GPU memory and the attention kernel the profiler sees, into
`train_throughput_cuda.json`: {"gpu", "torch", "runs": [{"size", "precision", "windows",
"samples_per_s", "peak_gpu_mib", "attention_kernel"}]}.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from spreadcast.config import TrainConfig
from spreadcast.evaluation.baseline import fit_ridge, predict_ridge
from spreadcast.features.windows import Windows
from spreadcast.model import losses
from spreadcast.model.net import ModelConfig, SpreadTransformer
from spreadcast.training.device import attention_kernel, set_precision
from spreadcast.training.loop import autocast_context

ROOT = Path(__file__).resolve().parents[1]
SIZES = {
    "default": dict(features=256, history=32, d_model=64, n_heads=4, n_layers=2),
    "full": dict(features=4506, history=192, d_model=192, n_heads=8, n_layers=4),
}
DATES, TARGETS, BATCH = 2034, 106, 64


def bench(size: dict, steps: int, repeats: int, amp: bool) -> dict:
    """The CPU table's entry: fp32 or bf16, windows in (host = device) memory."""
    result = bench_device(size, torch.device("cpu"), "bf16" if amp else "fp32", "device", steps, repeats)
    return {k: result[k] for k in ("samples_per_s", "runs", "parameters")}


def bench_device(size: dict, device: torch.device, precision: str, where: str, steps: int, repeats: int,
                 batch: int = BATCH) -> dict:
    """samples/s of training steps on `device` in `precision` (fp32 | tf32 | bf16), with the
    windows on the host (gathered, pinned, copied per step) or on the device."""
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    x = torch.randn(DATES, size["features"])
    windows = Windows(x, torch.zeros_like(x), torch.randn(DATES, TARGETS), size["history"])
    if where == "device":
        windows = windows.to(device)
    cfg = ModelConfig(n_features=size["features"], n_targets=TARGETS, history=size["history"],
                      d_model=size["d_model"], n_heads=size["n_heads"], n_layers=size["n_layers"],
                      skip_decays=tuple(TrainConfig().skip_decays))
    model = SpreadTransformer(cfg).to(device)
    amp = precision == "bf16"
    set_precision(device, precision == "tf32", amp)
    autocast, _ = autocast_context(device, amp)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    rows = np.arange(size["history"] - 1, DATES)
    rng = np.random.default_rng(0)

    def step():
        xb, mb, yb = windows.batch(rng.choice(rows, batch, replace=False))
        if where == "host" and cuda:
            xb, mb, yb = (t.pin_memory().to(device, non_blocking=True) for t in (xb, mb, yb))
        with autocast():
            forecast, score = model(xb, mb)
        have = ~torch.isnan(yb)
        loss = losses.huber(forecast.float(), yb, have, 0.2) + losses.pairwise_rank(score.float(), yb, have)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    for _ in range(5):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        rates.append(steps * batch / (time.perf_counter() - start))
    xb, mb, _ = windows.batch(rows[:2])
    kernel = attention_kernel(model, xb.to(device), mb.to(device), autocast)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else 0.0
    return {"samples_per_s": round(statistics.median(rates), 1), "peak_gpu_mib": round(peak, 1),
            "attention_kernel": kernel, "runs": [round(r, 1) for r in rates],
            "parameters": sum(p.numel() for p in model.parameters())}


def main_device(device: torch.device, steps: int, repeats: int, out: str) -> None:
    runs = []
    for name, size in SIZES.items():
        for precision in ("fp32", "tf32", "bf16"):
            for where in ("host", "device"):
                result = bench_device(size, device, precision, where, steps, repeats)
                runs.append({"size": name, "precision": precision, "windows": where,
                             **{k: result[k] for k in ("samples_per_s", "peak_gpu_mib", "attention_kernel")}})
                print(f"{name:<8} {precision:<5} windows on {where:<6} {result['samples_per_s']:>10.1f} samples/s  "
                      f"peak {result['peak_gpu_mib']:>8.1f} MiB  {result['attention_kernel']}", flush=True)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    Path(out).write_text(json.dumps({"gpu": gpu, "torch": torch.__version__, "runs": runs}, indent=2) + "\n")


def bench_ridge(features: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1400, features))
    y = rng.standard_normal((1400, 4 * TARGETS))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        w, b = fit_ridge(x, y, 10.0)
        predict_ridge(w, b, x[:250])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu (the default table) or cuda (the GPU grid)")
    p.add_argument("--out", help="default: bench/results/train_throughput.json, or _cuda.json with --device cuda")
    args = p.parse_args()
    if args.device != "cpu":
        out = args.out or str(ROOT / "bench" / "results" / "train_throughput_cuda.json")
        main_device(torch.device(args.device), args.steps, args.repeats, out)
        return
    args.out = args.out or str(ROOT / "bench" / "results" / "train_throughput.json")
    results = {"device": "cpu", "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "batch": BATCH}
    for name, size in SIZES.items():
        for amp in (False, True):
            key = f"{name}_{'bf16' if amp else 'fp32'}"
            steps = args.steps if name == "default" else max(2, args.steps // 10)
            results[key] = {**bench(size, steps, args.repeats, amp), **size}
            print(f"{key:<14} {results[key]['samples_per_s']:>9.1f} samples/s "
                  f"({results[key]['parameters']:,} parameters)", flush=True)
        ridge = bench_ridge(size["features"], args.repeats)
        results[f"{name}_ridge_fit_s"] = round(ridge, 3)
        epoch = (DATES - 700) / results[f"{name}_fp32"]["samples_per_s"]
        results[f"{name}_epoch_over_ridge_fit"] = round(epoch / ridge, 1)
        print(f"{name} ridge fit+predict {ridge:.3f} s; one training epoch = {epoch / ridge:.1f}x that", flush=True)
    results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    full_copy = DATES * SIZES["full"]["history"] * SIZES["full"]["features"] * 4 / 2**20
    results["full_materialised_windows_mib"] = round(full_copy, 1)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"peak RSS {results['peak_rss_mib']} MiB (materialised full-size windows would be {full_copy:,.0f} MiB)")


if __name__ == "__main__":
    main()
