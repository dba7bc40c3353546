"""Convert a validated dataset into typed parquet for the stages that follow.

Outputs (one folder):
    prices.parquet        date_id + every feature column; train days, then test days that
                          follow train (test rows overlapping train are dropped, train wins);
                          dense date axis, absent days as empty rows
    labels.parquet        date_id + every target on train days; a label is kept only if it
                          was published by the last train day (d + lag + 1 <= last train day)
    test_days.parquet     date_id, is_scored
    revealed.parquet      long table of the lagged test label files: date_id (day published),
                          label_date_id, lag, target, value
    registry.json         ordered feature and target names, lags, date ranges, fingerprints
    label_check.json      provided train_labels.csv vs the recomputation from prices
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from spreadcast.data.layout import DATE, LABEL_DATE, SCORED, Dataset, dense_dates
from spreadcast.data.targets import Target, compute_labels, is_revealed
from spreadcast.io import read_json, sha256_file, write_json


def _label_check(provided: np.ndarray, recomputed: np.ndarray, names: list[str], tolerance: float) -> dict:
    both = np.isfinite(provided) & np.isfinite(recomputed)
    diff = np.where(both, np.abs(provided - recomputed), 0.0)
    per_target = diff.max(axis=0) if diff.size else np.zeros(len(names))
    worst = int(np.argmax(per_target)) if len(names) else 0
    mismatched = diff > tolerance
    return {
        "tolerance": tolerance,
        "compared_cells": int(both.sum()),
        "mismatched_cells": int(mismatched.sum()),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "worst_target": names[worst] if len(names) else None,
        "only_in_provided": int((np.isfinite(provided) & ~np.isfinite(recomputed)).sum()),
        "only_in_recomputed": int((~np.isfinite(provided) & np.isfinite(recomputed)).sum()),
        "mismatched_targets": [names[j] for j in np.flatnonzero(mismatched.any(axis=0))][:50],
    }


def ingest(ds: Dataset, out: Path, tolerance: float) -> dict:
    """Write the typed tables of `ds` into folder `out`; returns the registry."""
    names = [t.name for t in ds.targets]
    train = dense_dates(ds.train)
    train_dates = train[DATE].to_numpy()
    last_train = int(train_dates[-1])
    price_columns = sorted({c for t in ds.targets for c in t.columns})
    price_matrix = train.select(price_columns).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        recomputed = compute_labels(np.log(price_matrix), price_columns, ds.targets)

    check = {"provided": ds.train_labels is not None}
    if ds.train_labels is not None:
        provided = pl.DataFrame({DATE: train_dates}).join(ds.train_labels, on=DATE, how="left")
        provided = provided.select(names).to_numpy()
        check.update(_label_check(provided, recomputed, names, tolerance))
        labels = provided
    else:
        labels = recomputed
    lags = np.array([t.lag for t in ds.targets])
    unpublished = ~is_revealed(train_dates[:, None], lags[None, :], last_train)
    check["masked_unpublished"] = int((np.isfinite(labels) & unpublished).sum())
    labels = np.where(unpublished, np.nan, labels)

    prices = train
    overlap = 0
    test_days = pl.DataFrame({DATE: [], SCORED: []}, schema={DATE: pl.Int64, SCORED: pl.Boolean})
    revealed = []
    if ds.test is not None:
        test_days = ds.test.select(DATE, SCORED)
        overlap = int((ds.test[DATE] <= last_train).sum())
        new_rows = ds.test.filter(pl.col(DATE) > last_train).select(DATE, *ds.features)
        prices = dense_dates(pl.concat([ds.train, new_rows]))
        for lag, frame in ds.lagged.items():
            targets = [t.name for t in ds.targets_of(lag)]
            revealed.append(frame.unpivot(index=[DATE, LABEL_DATE], on=targets, variable_name="target")
                            .with_columns(pl.lit(lag, dtype=pl.Int64).alias("lag")))
    revealed_frame = (pl.concat(revealed).drop_nulls("value") if revealed else
                      pl.DataFrame(schema={DATE: pl.Int64, LABEL_DATE: pl.Int64, "target": pl.String,
                                           "value": pl.Float64, "lag": pl.Int64}))

    prices.write_parquet(out / "prices.parquet")
    pl.DataFrame({DATE: train_dates, **{n: labels[:, j] for j, n in enumerate(names)}}).write_parquet(
        out / "labels.parquet")
    test_days.write_parquet(out / "test_days.parquet")
    revealed_frame.write_parquet(out / "revealed.parquet")

    registry = {
        "source": str(ds.folder),
        "features": ds.features,
        "targets": [t.to_dict() for t in ds.targets],
        "lags": ds.lags,
        "train_dates": [int(train_dates[0]), last_train],
        "test_dates": [int(test_days[DATE].min()), int(test_days[DATE].max())] if test_days.height else None,
        "test_overlap_days": overlap,
        "fingerprint": {p.name: sha256_file(p) for p in sorted(ds.folder.glob("*.csv"))},
        "warnings": ds.warnings,
    }
    write_json(out / "registry.json", registry)
    write_json(out / "label_check.json", check)
    return registry


@dataclass
class Ingested:
    """The ingest stage's tables, with labels aligned to the dense price date axis."""

    prices: pl.DataFrame
    date_ids: np.ndarray
    labels: np.ndarray          # (dates, T); NaN on days without a published label
    targets: list[Target]
    registry: dict
    revealed: pl.DataFrame      # long table of the lagged test label files

    @property
    def max_lag(self) -> int:
        return max(t.lag for t in self.targets)


def load_ingested(folder: str | Path, prices: bool = True) -> Ingested:
    """The ingest outputs; with `prices=False` the price table holds only its date_id column."""
    folder = Path(folder)
    registry = read_json(folder / "registry.json")
    prices = pl.read_parquet(folder / "prices.parquet", columns=None if prices else [DATE])
    targets = [Target(**t) for t in registry["targets"]]
    names = [t.name for t in targets]
    labels = prices.select(DATE).join(pl.read_parquet(folder / "labels.parquet"), on=DATE, how="left")
    return Ingested(prices=prices, date_ids=prices[DATE].to_numpy(),
                    labels=labels.select(names).to_numpy().astype(np.float64),
                    targets=targets, registry=registry, revealed=pl.read_parquet(folder / "revealed.parquet"))
