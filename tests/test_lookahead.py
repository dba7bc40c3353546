"""Proof of no look-ahead, through the real stage scripts on tiny generated markets."""
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl

from conftest import BLEND, EVALUATE, PER_LAG, PIPELINE, stage, write_params
from spreadcast import config
from spreadcast.data.ingest import load_ingested
from spreadcast.features import windows
from spreadcast.features.engineer import column_kinds, engineer


def perturb_after(dataset: Path, t: int, seed: int = 0) -> None:
    """Change every cell published after date t: prices, test rows and labels."""
    rng = np.random.default_rng(seed)
    for name in ("train.csv", "test.csv"):
        df = pl.read_csv(dataset / name, infer_schema_length=0)
        cols = [c for c in df.columns if c not in ("date_id", "is_scored")]
        df.with_columns([pl.when(pl.col("date_id").cast(pl.Int64) > t)
                         .then(pl.col(c).cast(pl.Float64) * float(rng.uniform(0.7, 1.4)))
                         .otherwise(pl.col(c).cast(pl.Float64)).alias(c) for c in cols]).write_csv(dataset / name)
    pairs = pl.read_csv(dataset / "target_pairs.csv")
    lag_of = dict(zip(pairs["target"], pairs["lag"]))
    labels = pl.read_csv(dataset / "train_labels.csv")
    # a label of date d is published on d + lag + 1: change every one published after t
    labels.with_columns([pl.when(pl.col("date_id") + lag_of[c] + 1 > t).then(pl.col(c) + 0.05)
                         .otherwise(pl.col(c)).alias(c) for c in lag_of]).write_csv(dataset / "train_labels.csv")
    for path in sorted((dataset / "lagged_test_labels").glob("*.csv")):
        df = pl.read_csv(path)
        cols = [c for c in df.columns if c.startswith("target_")]
        df.with_columns([pl.when(pl.col("date_id") > t).then(pl.col(c) - 0.05).otherwise(pl.col(c)).alias(c)
                         for c in cols]).write_csv(path)


def test_features_and_windows_unchanged_by_later_data(tmp_path):
    params, base = write_params(tmp_path / "base")
    moved_params, moved = write_params(tmp_path / "moved")
    for command in PIPELINE:
        stage(command, params, in_process=True, d=base)
    meta = json.loads((base / "tensors" / "meta.json").read_text())
    t = meta["splits"]["val"]["date_ids"][0]          # training statistics end well before t

    shutil.copytree(base / "dataset", moved / "dataset")
    perturb_after(moved / "dataset", t)
    for command in PIPELINE[1:]:
        stage(command, moved_params, in_process=True, d=moved)
    dates = np.load(base / "tensors" / "date_ids.npy")
    upto = int(np.searchsorted(dates, t, side="right"))
    for name in ("features", "missing"):
        a = np.load(base / "tensors" / f"{name}.npy")
        b = np.load(moved / "tensors" / f"{name}.npy")
        np.testing.assert_array_equal(a[:upto], b[:upto], err_msg=f"{name} at or before date {t} changed")
    assert not np.array_equal(np.load(base / "tensors/features.npy")[upto:],
                              np.load(moved / "tensors/features.npy")[upto:])
    assert json.loads((moved / "tensors" / "meta.json").read_text())["features"] == meta["features"]

    # every engineered feature before prescreening, revealed labels and spreads included
    feat_cfg = config.load("features", params)
    ingested = [load_ingested(x / "data") for x in (base, moved)]
    kinds = column_kinds(ingested[0].prices)
    (names_a, a), (names_b, b) = (engineer(d.prices, feat_cfg, d.targets, d.labels, d.revealed, kinds)
                                  for d in ingested)
    assert names_a == names_b
    rows = ingested[0].date_ids <= t
    revealed = [j for j, n in enumerate(names_a) if n.endswith("__revealed")]
    assert len(revealed) == len(ingested[0].targets) and np.isfinite(a[rows][:, revealed]).any()
    assert any(n.startswith("spread[") for n in names_a)
    np.testing.assert_array_equal(a[rows], b[rows], err_msg=f"an engineered feature at or before {t} changed")
    assert not np.array_equal(a[~rows], b[~rows])

    # labels whose last price is published by t, scaled and raw, and every scaling statistic
    tensors = [windows.load(x / "tensors") for x in (base, moved)]
    fixed = dates[:, None] + tensors[0].target_lags[None, :] + 1 <= t
    for name in ("raw_labels", "labels"):
        x, y = (np.asarray(getattr(tn, name), dtype=np.float64) for tn in tensors)
        np.testing.assert_array_equal(np.where(fixed, x, 0.0), np.where(fixed, y, 0.0), err_msg=name)
    assert json.loads((base / "scaling/scaling.json").read_text()) == \
        json.loads((moved / "scaling/scaling.json").read_text())


def test_model_without_signal_scores_near_zero(tmp_path):
    """With nothing predictable, the holdout Sharpe stays within 4/sqrt(days) of zero.

    Under the null the daily rank ICs are independent with mean zero, so their Sharpe has a
    standard deviation of about 1/sqrt(days): a 4-sigma bound fails by chance with odds below
    1e-4, while any leak of future returns into the inputs gives scores far above it.
    """
    holdout = 150
    params, d = write_params(tmp_path, synthetic={"signal_strength": 0.0, "n_train_days": 700, "lags": [1],
                                                  "targets_per_lag": 24},
                             data={"lags": [1]},
                          windows={"history": 8, "val_days": 60, "holdout_days": holdout, "embargo": 5})
    for command in PIPELINE:
        stage(command, params, in_process=True, d=d)
    for k in (1,):
        for command in PER_LAG:
            stage(command, params, in_process=True, d=d, k=k)
    stage(BLEND, params, in_process=True, d=d)
    stage(EVALUATE, params, in_process=True, d=d)
    metrics = json.loads((d / "metrics" / "evaluate.json").read_text())
    bound = 4 / np.sqrt(holdout)
    assert abs(metrics["model_sharpe"]) < bound
    assert abs(metrics["ridge_sharpe"]) < bound
