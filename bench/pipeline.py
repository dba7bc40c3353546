"""Wall time and peak RSS of every stage, run one by one on a copy of the pipeline's settings.

usage: python bench/pipeline.py [--size default|full] [--upto windows] [--out bench/results/pipeline_default.json]

`full` is the full-size feature setting (every engineered feature kept, history 192): it runs
the data stages only, to measure the windows export against the size of its tensors.
Peak RSS is per stage process (os.wait4); the start-up RSS of a bare interpreter importing the
same modules is reported beside it, since it is most of a small stage's footprint.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA_STAGES = [
    ("generate", "generate.py --dataset {d}/dataset --oracle {d}/oracle"),
    ("ingest", "ingest.py --out {d}/data"),
    ("split", "split.py --data {d}/data --out {d}/splits"),
    ("prescreen", "prescreen.py --data {d}/data --splits {d}/splits --out {d}/features"),
    ("scale", "scale.py --data {d}/data --splits {d}/splits --features {d}/features --out {d}/scaling"),
    ("windows", "windows.py --data {d}/data --splits {d}/splits --features {d}/features --scaling {d}/scaling "
                "--out {d}/tensors"),
]
LAG_STAGES = [
    ("train", "train.py --lag {k} --tensors {d}/tensors --out {d}/train/lag{k} --metrics {d}/metrics/train_lag{k}.json "
              "--work {d}/work/train_lag{k}"),
    ("prune", "prune.py --lag {k} --train {d}/train/lag{k} --out {d}/prune/lag{k}"),
    ("finetune", "finetune.py --lag {k} --tensors {d}/tensors --train {d}/train/lag{k} --prune {d}/prune/lag{k} "
                 "--out {d}/finetune/lag{k} --metrics {d}/metrics/finetune_lag{k}.json --work {d}/work/finetune_lag{k}"),
]
FINAL_STAGES = [
    ("blend", "blend.py --data {d}/data --tensors {d}/tensors --train {d}/train --models {d}/finetune --out {d}/blend"),
    ("evaluate", "evaluate.py --data {d}/data --tensors {d}/tensors --models {d}/finetune --blend {d}/blend "
                 "--oracle {d}/oracle "
                 "--out {d}/evaluate --metrics {d}/metrics/evaluate.json"),
    ("submit", "submit.py --data {d}/data --tensors {d}/tensors --models {d}/finetune --blend {d}/blend "
               "--oracle {d}/oracle "
               "--out {d}/submission --metrics {d}/metrics/submit.json"),
]


def measure(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def startup_rss(modules: str) -> float:
    return measure([sys.executable, "-c", f"import {modules}"])[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=["default", "full"], default="default")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    out = Path(args.out or ROOT / "bench" / "results" / f"pipeline_{args.size}.json")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if args.size == "full":
        params["prescreen"]["top_k"] = 100_000
        params["windows"]["history"] = 192
    lags = params["data"]["lags"]
    stages = list(DATA_STAGES)
    if args.size == "default":
        stages += [(f"{name}@{k}", cmd.replace("{k}", str(k))) for name, cmd in LAG_STAGES[:1] for k in lags]
        stages += [(f"{name}@{k}", cmd.replace("{k}", str(k))) for name, cmd in LAG_STAGES[1:2] for k in lags]
        stages += [(f"{name}@{k}", cmd.replace("{k}", str(k))) for name, cmd in LAG_STAGES[2:] for k in lags]
        stages += FINAL_STAGES
    results = {}
    with tempfile.TemporaryDirectory(prefix="spreadcast-bench-") as tmp:
        d = Path(tmp) / "artifacts"      # stages write only under artifacts/ beside their params file
        params["data"]["dir"] = str(d / "dataset")
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(params))
        for name, cmd in stages:
            script, *rest = cmd.format(d=d).split()
            wall, rss = measure([sys.executable, str(ROOT / "stages" / script), "--params", str(Path(tmp) / "params.yaml"), *rest])
            results[name] = {"wall_s": round(wall, 2), "peak_rss_mib": round(rss, 1)}
            print(f"{name:<12} {wall:7.1f} s  {rss:8.1f} MiB", flush=True)
        tensors = d / "tensors"
        tensor_mib = sum(f.stat().st_size for f in tensors.glob("*.npy")) / 2**20
        meta = json.loads((tensors / "meta.json").read_text())
    base = startup_rss("spreadcast.features.windows, spreadcast.features.scaling, spreadcast.data.ingest, polars")
    summary = {
        "size": args.size, "machine": {"cpus": os.cpu_count()},
        "stages": results,
        "total_wall_s": round(sum(r["wall_s"] for r in results.values()), 1),
        "tensors": {"mib": round(tensor_mib, 1), "shape": meta["shape"], "history": meta["history"]},
        "windows_stage": {
            "peak_rss_mib": results["windows"]["peak_rss_mib"], "startup_rss_mib": round(base, 1),
            "above_startup_mib": round(results["windows"]["peak_rss_mib"] - base, 1),
            "above_startup_over_tensors": round((results["windows"]["peak_rss_mib"] - base) / tensor_mib, 2),
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["windows_stage"]), f"total {summary['total_wall_s']} s -> {out}")


if __name__ == "__main__":
    main()
