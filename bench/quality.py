"""Forecast quality of the default pipeline on every market of the zoo, the null market, and
real prices: the yardstick no default may be tuned to.

usage: python bench/quality.py [--markets default,levels,...] [--out bench/results/quality.json]
                               [--work DIR] [--bootstrap 2000] [--reseed K]

Each market runs the real pipeline (`dvc repro evaluate`) with the repository's `params.yaml`
in a temporary copy; only the market changes (`synthetic` settings, or `data.dir` for
`../shared/real_dev`, skipped when absent). From each run's `artifacts/metrics/evaluate.json`
and `artifacts/evaluate/daily_ic.csv` it reports the holdout Sharpe of the model (the served
blend), the ridge on
all the model's inputs, each target's mean training rank as a constant (`const_rank`) and the
oracle (`ceiling`, null on real data and on the null market), and a 90% circular block
bootstrap over holdout days of the model's Sharpe minus the better baseline's. On real prices
(real_dev) it also runs `dvc repro submit` and reports what is served on the test days against
the labels the lagged test label files reveal (`served`: the heads refit on every labelled day,
the prior updated with every revealed label), beside the ridge on every input (fit on every
published label) and a constant ranking.
`--reseed K` adds K to every synthetic market's seed (the default market's `synthetic.seed`
included): the same kinds of market with other draws of columns, loadings and shocks, which no
default was chosen on (real_dev is skipped).
Writes `bench/results/quality.json`:
`{"markets": {NAME: {"days", "model", "ridge", "const_rank", "ceiling", "model_minus_best_ci90"[, "served"]}},
"wall_s", "components": {NAME: {"transformer", "blend_ridge", "prior", "own"}}}` (the blend's own components beside
the table) and prints the table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import yaml

ROOT = Path(__file__).resolve().parents[1]
REAL_DEV = ROOT.parent / "shared" / "real_dev"

# Smaller than the embedded default (so the whole table runs in well under an hour on 2 cores),
# and each market different in size, lags, tails and calendar.
_SMALL = dict(n_train_days=1400, n_test_days=60, n_scored_days=60, n_lme=3, n_jpx=3, n_us=40, n_fx=16,
              targets_per_lag=50, signal_strength=0.0)

# name -> params.yaml sections to override; everything else is the repository's defaults.
MARKETS: dict[str, dict] = {
    "default": {},                                                       # the embedded lead-lag market
    "levels": {"synthetic": {**_SMALL, "seed": 11, "level_strength": 0.06, "n_levels": 4}},
    "reversion": {"synthetic": {**_SMALL, "seed": 12, "reversion_strength": 0.04, "targets_per_lag": 80,
                                "lags": [1, 2]},
                  "data": {"lags": [1, 2]}},
    "drift": {"synthetic": {**_SMALL, "seed": 13, "drift_strength": 0.06, "tail_df": 3.0, "n_us": 25}},
    "mixed": {"synthetic": {**_SMALL, "seed": 14, "signal_strength": 0.08, "level_strength": 0.04, "n_levels": 3,
                            "reversion_strength": 0.02, "drift_strength": 0.03, "vol_shock_rate": 0.01,
                            "late_start_days": 200, "holiday_rate": 0.05, "n_us": 60, "n_fx": 24}},
    "flip": {"synthetic": {**_SMALL, "seed": 15, "signal_strength": 0.12, "regime_day": 500,
                           "regime_factor": -1.0}},
    "null": {"synthetic": {**_SMALL, "seed": 16}},
    "real_dev": {"data": {"dir": str(REAL_DEV)}},
}


def finished_projects(work: Path, markets: str | None, tool: str) -> list[tuple[str, Path]]:
    """(name, folder) of the projects a `--work` folder keeps whose pipeline finished (their
    `evaluate.json` is written): those named in `markets` (comma-separated), or every one. A
    named project that did not finish stops `tool` with the command that makes it."""
    work = Path(work)
    done = lambda root: (root / "artifacts" / "metrics" / "evaluate.json").is_file()   # noqa: E731
    names = markets.split(",") if markets else sorted(d.name for d in work.iterdir() if done(d))
    for name in names:
        if not done(work / name):
            raise SystemExit(f"{tool}: {work / name}: no finished project (run bench/quality.py --work {work})")
    return [(name, work / name) for name in names]


def reseeded(overrides: dict, offset: int) -> dict:
    """A synthetic market's overrides with `offset` added to its seed (the repository's
    `synthetic.seed` where the market keeps it)."""
    base = yaml.safe_load((ROOT / "params.yaml").read_text())["synthetic"]["seed"]
    synthetic = overrides.get("synthetic", {})
    return {**overrides, "synthetic": {**synthetic, "seed": synthetic.get("seed", base) + offset}}


def project(root: Path, overrides: dict) -> Path:
    """A DVC copy of the pipeline in `root` with `overrides` applied to params.yaml. A project
    already there (`--work`) gets the current code and params, and DVC re-runs only what they
    change."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "stages", "src"):
        src, dest = ROOT / name, root / name
        if dest.is_dir():
            shutil.rmtree(dest)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if not (root / ".dvc").is_dir():
        subprocess.run([dvc_bin(), "init", "--no-scm", "-q"], cwd=root, check=True, env=env(root))
    return root


def dvc_bin() -> str:
    return str(Path(sys.executable).parent / "dvc")


def env(root: Path) -> dict:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(root / "src"),
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def run_pipeline(root: Path, name: str, stage: str = "evaluate") -> None:
    """`dvc repro <stage>`, echoing each stage as it starts; the log stays in `root`."""
    log = root / f"repro_{stage}.log" if stage != "evaluate" else root / "repro.log"
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen([dvc_bin(), "repro", stage], cwd=root, env=env(root), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for line in proc.stdout:
            out.write(line)
            if line.startswith("Running stage"):
                print(f"  [{name} {time.perf_counter() - start:6.0f} s] {line.strip()}", flush=True)
    if proc.wait() != 0:
        tail = log.read_text().splitlines()[-15:]
        raise SystemExit(f"quality: {name}: dvc repro failed (log {log}):\n" + "\n".join(tail))


def block_bootstrap(model: np.ndarray, best: np.ndarray, draws: int, block: int = 10,
                    seed: int = 0) -> list[float]:
    """90% interval of sharpe(model) - sharpe(best) over days resampled in circular blocks
    (the same days for both, so their common market moves cancel)."""
    ok = np.isfinite(model) & np.isfinite(best)
    model, best = model[ok], best[ok]
    n = model.size
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(draws, -(-n // block)))
    idx = ((starts[:, :, None] + np.arange(block)) % n).reshape(draws, -1)[:, :n]

    def sharpe(x: np.ndarray) -> np.ndarray:
        return x.mean(axis=1) / x.std(axis=1)

    diff = sharpe(model[idx]) - sharpe(best[idx])
    return [round(float(q), 4) for q in np.quantile(diff, [0.05, 0.95])]


def summarise(root: Path, draws: int) -> dict:
    """One market's row, from a finished project's evaluate outputs."""
    metrics = json.loads((root / "artifacts/metrics/evaluate.json").read_text())
    daily = pl.read_csv(root / "artifacts/evaluate/daily_ic.csv")
    if "split" in daily.columns:                 # the chart's file also holds the validation days
        daily = daily.filter(pl.col("split") == "holdout")
    best = max(("ridge", "const_rank"), key=lambda k: metrics[f"{k}_sharpe"])
    model_ic, best_ic = (daily[f"{k}_ic"].cast(pl.Float64).to_numpy() for k in ("model", best))
    return {"days": int(np.isfinite(model_ic).sum()),
            "model": round(metrics["model_sharpe"], 4),
            "ridge": round(metrics["ridge_sharpe"], 4),
            "const_rank": round(metrics["const_rank_sharpe"], 4),
            "ceiling": round(metrics["ceiling_sharpe"], 4) if "ceiling_sharpe" in metrics else None,
            "model_minus_best_ci90": block_bootstrap(model_ic, best_ic, draws)}


GENERATED = "artifacts/synthetic/dataset"     # the generate stage's dataset (params.yaml's `data.dir`)


def real_prices(root: Path) -> bool:
    """Whether the project reads a dataset of its own (real prices) instead of a generated one."""
    return yaml.safe_load((root / "params.yaml").read_text())["data"]["dir"] != GENERATED


def served(root: Path) -> dict:
    """The submission's score on the test days against the labels the lagged test label files
    reveal (`submit`: the heads refit on every labelled day, the prior updated with every
    revealed label), beside the ridge on every input and a constant ranking on the same days."""
    metrics = json.loads((root / "artifacts/metrics/submit.json").read_text())
    return {"days": metrics["scored_days"], "model": round(metrics["test_sharpe"], 4),
            "ridge": round(metrics["ridge_sharpe"], 4), "const_rank": round(metrics["const_rank_sharpe"], 4)}


def components(root: Path) -> dict:
    """The holdout Sharpe of the served blend's own components (beside the table)."""
    metrics = json.loads((root / "artifacts/metrics/evaluate.json").read_text())
    return {k: round(metrics[f"{k}_sharpe"], 4) for k in ("transformer", "blend_ridge", "prior", "own")
            if f"{k}_sharpe" in metrics}


def table(markets: dict) -> str:
    lines = ["| market | days | model | ridge | const_rank | ceiling | model / ceiling | model - best, 90% CI |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in markets.items():
        ceiling = "" if m["ceiling"] is None else f"{m['ceiling']:+.3f}"
        share = "" if not m["ceiling"] else f"{m['model'] / m['ceiling']:.0%}"
        lo, hi = m["model_minus_best_ci90"]
        lines.append(f"| {name} | {m['days']} | {m['model']:+.3f} | {m['ridge']:+.3f} | {m['const_rank']:+.3f} "
                     f"| {ceiling} | {share} | [{lo:+.3f}, {hi:+.3f}] |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--markets", default=",".join(MARKETS), help="comma-separated subset of: " + ", ".join(MARKETS))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "quality.json"))
    p.add_argument("--work", help="keep each market's project here and reuse what is there "
                                  "(default: a temporary folder)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap draws")
    p.add_argument("--reseed", type=int, default=0,
                   help="add this to every synthetic market's seed (other draws of each market; real_dev skipped)")
    args = p.parse_args()
    names = [n.strip() for n in args.markets.split(",") if n.strip()]
    unknown = [n for n in names if n not in MARKETS]
    if unknown:
        raise SystemExit(f"quality: unknown market {unknown[0]!r} (known: {', '.join(MARKETS)})")
    if args.reseed and "real_dev" in names:
        print("quality: --reseed: real_dev has no seed, skipped")
        names.remove("real_dev")
    if "real_dev" in names and not (REAL_DEV / "train.csv").is_file():
        print(f"quality: {REAL_DEV} not found, real_dev skipped")
        names.remove("real_dev")
    start = time.perf_counter()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="spreadcast-quality-"))
    results, parts = {}, {}
    for name in names:
        print(f"quality: {name}", flush=True)
        root = work / name
        overrides = reseeded(MARKETS[name], args.reseed) if args.reseed else MARKETS[name]
        run_pipeline(project(root, overrides), name)
        results[name] = summarise(root, args.bootstrap)
        parts[name] = components(root)
        if real_prices(root):           # score what is served on the test days too
            run_pipeline(root, name, "submit")
            results[name]["served"] = served(root)
        if not args.work:
            shutil.rmtree(root)
    out = {"markets": results, "wall_s": round(time.perf_counter() - start, 1), "components": parts,
           "reseed": args.reseed}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(args.out)
    print(table(results))
    for name, m in results.items():
        if "served" in m:
            print(f"{name}: served on its {m['served']['days']} test days: "
                  f"{m['served']['model']:+.3f}, the ridge on every input {m['served']['ridge']:+.3f}, "
                  f"a constant ranking {m['served']['const_rank']:+.3f}")
    print(f"quality: {len(results)} markets in {out['wall_s']:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
