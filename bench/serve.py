"""Serving cost per day: cold start, median and p99 latency of `predict()`, and peak RSS, for 424
targets at the default size and at the roadmap's full size.

usage: python bench/serve.py [--artifacts artifacts] [--runs 3] [--sizes default full]
                             [--out bench/results/serve_replay.json]

Each run is a fresh process replaying the embedded market's 134 test days through the
competition's `predict()` (`spreadcast.serve.replay`), so cold start and peak RSS are those of a
new serving process. Cold start is the time to construct the server (read the artifacts, load
and freeze the heads, warm the running state), measured after the imports. After each run the
machine's fp32 matrix-product rate is measured too (`gemm_gmacs`): the full size's latency
follows it, and on a shared machine it moves from hour to hour.

- `default`: the trained artifacts of `--artifacts` (run `make repro` first), as submitted.
- `full`: every engineered feature (no prescreening), history 192, d_model 192, 8 heads,
  4 blocks. The data stages run into a temporary folder; the heads are initialised, not trained
  (an hour per lag on 2 CPU cores): the cost of serving does not depend on the weights' values.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
FULL_MODEL = dict(d_model=192, n_heads=8, n_layers=4)
DATA_STAGES = [
    "generate.py --dataset {d}/synthetic/dataset --oracle {d}/synthetic/oracle",
    "ingest.py --out {d}/data",
    "split.py --data {d}/data --out {d}/splits",
    "prescreen.py --data {d}/data --splits {d}/splits --out {d}/features",
    "scale.py --data {d}/data --splits {d}/splits --features {d}/features --out {d}/scaling",
    "windows.py --data {d}/data --splits {d}/splits --features {d}/features --scaling {d}/scaling --out {d}/tensors",
]


def replay(artifacts: Path, dataset: Path) -> dict:
    """One serving process over the dataset's test days: its stats and peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats.json"
        argv = [sys.executable, "-m", "spreadcast.serve.replay", "--dataset", str(dataset),
                "--artifacts", str(artifacts), "--out", str(Path(tmp) / "replay.csv"), "--stats", str(stats)]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        err = proc.stderr.read()
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"replay of {artifacts} failed:\n{err[-3000:]}")
        result = json.loads(stats.read_text())
    result["process_wall_s"] = round(time.perf_counter() - start, 2)
    result["peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)
    result["gemm_gmacs"] = gemm_rate()
    return result


def gemm_rate(seconds: float = 1.0) -> float:
    """The machine's fp32 matrix-product rate right now, in G multiply-adds a second: the
    full-size blocks' largest product (4 heads, 192 x 192 by 192 x 576), median of repeated
    timings. The full size's latency follows it (the blocks run at about this rate), and on a
    shared machine it moves by a quarter from hour to hour, so each run records it."""
    import torch

    a, w = torch.randn(4, 192, 192), torch.randn(4, 192, 576)
    for _ in range(10):
        torch.bmm(a, w)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        torch.bmm(a, w)
        times.append(time.perf_counter() - t0)
    return round(a.numel() * w.shape[-1] / statistics.median(times) / 1e9, 1)


def machine() -> dict:
    """What the timings ran on: the core count and, where /proc/cpuinfo says, the processor's
    model and family (the same code runs about twice as fast on one generation as on another)."""
    out = {"cpus": os.cpu_count()}
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return out
    fields = dict(line.split(":", 1) for line in info if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    for key, name in (("model name", "cpu"), ("cpu family", "cpu_family"), ("model", "cpu_model")):
        if key in fields:
            out[name] = fields[key]
    return out


def full_size_artifacts(folder: Path) -> Path:
    """Data stages at full size into `folder`, and initialised full-size heads for every lag."""
    import torch

    from spreadcast.io import read_json
    from spreadcast.model import checkpoint
    from spreadcast.model.net import ModelConfig

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prescreen"]["top_k"] = 100_000
    params["windows"]["history"] = 192
    d = folder / "artifacts"
    params["data"]["dir"] = str(d / "synthetic" / "dataset")
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    for command in DATA_STAGES:
        script, *rest = command.format(d=d).split()
        out = subprocess.run([sys.executable, str(ROOT / "stages" / script), "--params", str(folder / "params.yaml"),
                              *rest], capture_output=True, text=True, cwd=folder)
        if out.returncode != 0:
            raise SystemExit(f"{script} failed:\n{out.stderr[-3000:]}")
    meta = read_json(d / "tensors" / "meta.json")
    features = meta["model_inputs"]
    train = params["train"]
    for lag in params["data"]["lags"]:
        targets = [t["name"] for t in meta["targets"] if t["lag"] == lag]
        torch.manual_seed(lag)
        cfg = ModelConfig(n_features=len(features), n_targets=len(targets), history=192,
                          time2vec_dim=train["time2vec_dim"], ff_mult=train["ff_mult"],
                          skip_decays=tuple(train["skip_decays"]), dropout=0.0, **FULL_MODEL)
        model = checkpoint.build_model({"model": cfg.to_dict()})
        checkpoint.save(d / "finetune" / f"lag{lag}" / "model", {"model": model.state_dict()},
                        {"model": cfg.to_dict(), "features": features, "targets": targets,
                         "note": "initialised, not trained (serving benchmark)"})
    return d


def summarise(runs: list[dict]) -> dict:
    keys = ("cold_start_s", "latency_median_ms", "latency_p99_ms", "peak_rss_mib", "process_wall_s", "gemm_gmacs")
    out = {"days": runs[0]["days"], "fallbacks": max(r["fallbacks"] for r in runs), "runs": len(runs)}
    out.update({k: round(statistics.median(r[k] for r in runs), 3) for k in keys})
    out["per_run"] = [{k: r[k] for k in keys} for r in runs]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", default=str(ROOT / "artifacts"), help="trained artifacts (default size)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--sizes", nargs="+", choices=["default", "full"], default=["default", "full"])
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_replay.json"))
    args = p.parse_args()
    sizes = {}
    with tempfile.TemporaryDirectory(prefix="spreadcast-serve-") as tmp:
        for size in args.sizes:
            if size == "default":
                artifacts = Path(args.artifacts)
                if not all((artifacts / part).exists() for part in ("finetune", "blend", "tensors/meta.json")):
                    raise SystemExit(f"{artifacts}: no trained artifacts; run `make repro` first")
            else:
                print("full size: data stages and initialised heads ...", flush=True)
                artifacts = full_size_artifacts(Path(tmp))
            dataset = artifacts / "synthetic" / "dataset"
            meta = json.loads((artifacts / "tensors" / "meta.json").read_text())
            runs = []
            for i in range(args.runs):
                runs.append(replay(artifacts, dataset))
                r = runs[-1]
                print(f"{size:8} run {i + 1}: cold {r['cold_start_s']:.2f} s  median {r['latency_median_ms']:.2f} ms  "
                      f"p99 {r['latency_p99_ms']:.2f} ms  peak RSS {r['peak_rss_mib']:.0f} MiB  "
                      f"fallbacks {r['fallbacks']}  GEMM {r['gemm_gmacs']:.1f} GMAC/s", flush=True)
            sizes[size] = {**summarise(runs), "targets": len(meta["targets"]), "features": len(meta["model_inputs"]),
                           "history": meta["history"]}
    head = sizes.get("default") or next(iter(sizes.values()))
    result = {k: head[k] for k in ("days", "cold_start_s", "latency_median_ms", "latency_p99_ms", "fallbacks")}
    result.update({"machine": machine(), "sizes": sizes})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
