"""A local stand-in for the competition's gateway, written from its contract
(`../shared/kaggle_sample/README.md`, "How the competition serves these days").

For each distinct `date_id` of `test.csv`, in file order, it calls
`predict(test, label_lags_1_batch, ..., label_lags_4_batch)` once with polars frames: that day's
rows of `test.csv` (every column) and of each `test_labels_lag_k.csv`. A reply must be a polars or
pandas DataFrame of exactly one row, without `date_id`, whose columns are the four batches'
target columns in order; it must come within the reply limit. Any exception, late or malformed
reply fails the whole run, as it fails a submission. The replies, with `date_id` added, form the
submission.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pandas as pd
import polars as pl

REPLY_LIMIT_S = 300.0
LAGS = (1, 2, 3, 4)


class GatewayError(RuntimeError):
    """The run fails, as the competition fails a submission."""


def read_day_files(dataset: Path) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    test = pl.read_csv(dataset / "test.csv", infer_schema_length=None)
    lagged = [pl.read_csv(dataset / "lagged_test_labels" / f"test_labels_lag_{k}.csv", infer_schema_length=None)
              for k in LAGS]
    return test, lagged


def serve(predict: Callable, dataset: Path, reply_limit_s: float = REPLY_LIMIT_S) -> tuple[pl.DataFrame, list[float]]:
    """Run every test day through `predict`; the submission and each call's seconds."""
    test, lagged = read_day_files(dataset)
    replies, seconds = [], []
    for date_id in test["date_id"].unique(maintain_order=True).to_list():
        day = test.filter(pl.col("date_id") == date_id)
        batches = [frame.filter(pl.col("date_id") == date_id) for frame in lagged]
        expected = [c for b in batches for c in b.columns if c not in ("date_id", "label_date_id")]
        start = time.perf_counter()
        try:
            reply = predict(day, *batches)
        except Exception as exc:
            raise GatewayError(f"date_id {date_id}: predict raised {type(exc).__name__}: {exc}") from exc
        took = time.perf_counter() - start
        if took > reply_limit_s:
            raise GatewayError(f"date_id {date_id}: reply took {took:.1f} s, over the {reply_limit_s:.0f} s limit")
        if isinstance(reply, pd.DataFrame):
            reply = pl.from_pandas(reply)
        if not isinstance(reply, pl.DataFrame):
            raise GatewayError(f"date_id {date_id}: reply is a {type(reply).__name__}, not a DataFrame")
        if reply.height != 1:
            raise GatewayError(f"date_id {date_id}: reply has {reply.height} rows, expected 1")
        if "date_id" in reply.columns:
            raise GatewayError(f"date_id {date_id}: reply has a date_id column")
        if reply.columns != expected:
            raise GatewayError(f"date_id {date_id}: reply columns differ from the batches' target columns")
        replies.append(reply.with_columns(pl.lit(date_id, dtype=pl.Int64).alias("date_id")))
        seconds.append(took)
    submission = pl.concat(replies, how="vertical_relaxed")
    return submission.select("date_id", *[c for c in submission.columns if c != "date_id"]), seconds
