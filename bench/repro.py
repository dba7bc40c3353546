"""Wall time of the whole `dvc repro` and of a no-op `dvc repro`, in this repository.

usage: python bench/repro.py [--force] [--noop-runs 5] [--out bench/results/repro.json]

Runs `dvc repro` (with --force, every stage runs whatever the cache holds), then the no-op
`dvc repro` several times (median reported), and writes the stage-by-stage wall times that
DVC's own output shows between "Running stage" lines.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def repro(*extra: str) -> tuple[float, dict[str, float]]:
    """Wall seconds of one `dvc repro`, and the seconds from each stage's start to the next."""
    dvc = str(Path(sys.executable).parent / "dvc")
    start = time.perf_counter()
    proc = subprocess.Popen([dvc, "repro", *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    stages, current, began = {}, None, start
    for line in proc.stdout:
        found = re.match(r"Running stage '([^']+)'", line)
        if found:
            now = time.perf_counter()
            if current:
                stages[current] = round(now - began, 2)
            current, began = found.group(1), now
    if proc.wait() != 0:
        raise SystemExit(f"dvc repro {' '.join(extra)} failed")
    wall = time.perf_counter() - start
    if current:
        stages[current] = round(start + wall - began, 2)
    return wall, stages


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--force", action="store_true", help="run every stage, not only the changed ones")
    p.add_argument("--noop-runs", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "repro.json"))
    args = p.parse_args()
    wall, stages = repro(*(["--force"] if args.force else []))
    print(f"dvc repro{' --force' if args.force else ''}: {wall:.1f} s, {len(stages)} stages run", flush=True)
    noop = [repro()[0] for _ in range(args.noop_runs)]
    print(f"no-op dvc repro: median {statistics.median(noop):.2f} s over {len(noop)} runs", flush=True)
    result = {"machine": {"cpus": os.cpu_count()}, "forced": args.force, "repro_wall_s": round(wall, 1),
              "stages_run": len(stages), "stage_wall_s": stages,
              "noop_wall_s": {"median": round(statistics.median(noop), 2), "runs": [round(x, 2) for x in noop]}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
