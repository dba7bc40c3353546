"""Replay a dataset folder's test days through `predict()` exactly as the competition does.

usage: python -m spreadcast.serve.replay --dataset DIR [--artifacts artifacts] [--out replay.csv]

Feeds `test.csv` one date_id at a time, with the rows of each lagged label file whose
date_id is that day, writes the replies as a submission and, where the labels of the
replayed days are known (in the lagged label files), scores the scored days.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from spreadcast.data.layout import DATE, LABEL_DATE, SCORED
from spreadcast.evaluation import metric
from spreadcast.serve.server import Server


def replay(dataset: Path, artifacts: Path, server: Server | None = None) -> tuple[pl.DataFrame, dict]:
    """Serve every test day of `dataset` (through `server`, or a new one on `artifacts`)."""
    start = time.perf_counter()
    server = server or Server(artifacts)
    cold = time.perf_counter() - start
    test = pl.read_csv(dataset / "test.csv", infer_schema_length=None)      # typed, as the gateway sends
    lagged = {}
    for lag in server.lags:
        path = dataset / "lagged_test_labels" / f"test_labels_lag_{lag}.csv"
        lagged[lag] = pl.read_csv(path, infer_schema_length=None).with_columns(pl.col(DATE).cast(pl.Int64))
    dates = test[DATE].cast(pl.Int64).unique(maintain_order=True).to_list()
    rows, latency = [], []
    for d in dates:
        batches = [lagged[k].filter(pl.col(DATE) == d) for k in server.lags]
        day = test.filter(pl.col(DATE).cast(pl.Int64) == d)
        t0 = time.perf_counter()
        reply = server.predict(day, *batches)
        latency.append(time.perf_counter() - t0)
        rows.append(reply.with_columns(pl.lit(d, dtype=pl.Int64).alias(DATE)))
    submission = pl.concat(rows).select(DATE, *[c for c in rows[0].columns if c != DATE])
    stats = {"days": len(dates), "cold_start_s": round(cold, 3),
             "latency_median_ms": round(1000 * statistics.median(latency), 2),
             "latency_p99_ms": round(1000 * float(np.percentile(latency, 99)), 2),
             "fallbacks": server.fallbacks}
    stats.update(_score(submission, test, lagged))
    return submission, stats


def _score(submission: pl.DataFrame, test: pl.DataFrame, lagged: dict[int, pl.DataFrame]) -> dict:
    """Score the scored days whose labels appear in the lagged files (label_date_id = the day)."""
    truth = None
    for frame in lagged.values():
        labels = frame.drop(DATE).with_columns(pl.col(LABEL_DATE).cast(pl.Int64).alias(DATE)).drop(LABEL_DATE)
        labels = labels.with_columns(pl.exclude(DATE).cast(pl.Float64, strict=False))
        truth = labels if truth is None else truth.join(labels, on=DATE, how="full", coalesce=True)
    scored = test.filter(pl.col(SCORED).cast(pl.String).str.to_lowercase() == "true")[DATE].cast(pl.Int64)
    names = [c for c in submission.columns if c != DATE]
    joined = submission.filter(pl.col(DATE).is_in(scored.implode())).join(truth, on=DATE, how="inner", suffix="_y")
    if joined.height == 0:
        return {}
    y = joined.select([f"{n}_y" for n in names]).to_numpy().astype(np.float64)
    p = joined.select(names).to_numpy().astype(np.float64)
    keep = np.isfinite(y).sum(axis=1) >= 2
    if keep.sum() < 2:
        return {}
    summary = metric.summary(y[keep], p[keep])
    return {"scored_days": int(keep.sum()), "sharpe": summary["sharpe"], "ic_mean": summary["ic_mean"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="folder with test.csv and lagged_test_labels/")
    p.add_argument("--artifacts", default="artifacts", help="pipeline artifacts or an exported bundle")
    p.add_argument("--out", default="replay_submission.csv")
    p.add_argument("--stats", default=None, help="write timing and score as JSON here")
    args = p.parse_args(argv)
    submission, stats = replay(Path(args.dataset), Path(args.artifacts))
    submission.write_csv(args.out)
    if args.stats:
        Path(args.stats).write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats))


if __name__ == "__main__":
    sys.exit(main())
