"""Features from running state, one day at a time, equal the batch features of the same history."""
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import ROOT
from spreadcast.config import FeaturesConfig
from spreadcast.data.layout import read_dataset
from spreadcast.data.targets import Target
from spreadcast.features.engineer import column_kinds, engineer
from spreadcast.features.online import OnlineFeatures, lag_columns, revealed_row

REAL_DEV = ROOT.parent / "shared" / "real_dev"


def stepped(names, prices: pl.DataFrame, kinds, targets, cfg, labels=None, warm=0) -> np.ndarray:
    """Features stepped day by day (after taking in the first `warm` days as one block); the
    warmed days' rows are NaN."""
    columns = [c for c in prices.columns if c != "date_id"]
    online = OnlineFeatures(names, columns, kinds, targets, cfg)
    values = prices.select(columns).to_numpy().astype(np.float64)
    out = np.full((prices.height, len(names)), np.nan)
    if warm:
        online.warm(values[:warm])
    for i in range(warm, prices.height):
        label_row = None if labels is None else revealed_row(
            i, lag_columns(targets), lambda d: labels[d] if 0 <= d < len(labels) else None, np.full(len(targets), np.nan))
        out[i] = online.step(values[i], label_row)
    return out


def assert_equal_features(prices, targets, labels=None, cfg=FeaturesConfig(), subset=None):
    kinds = column_kinds(prices)
    names, batch = engineer(prices, cfg, targets, labels, kinds=kinds)
    if subset is not None:                                    # a model reads a shuffled subset
        pick = np.random.default_rng(0).permutation(len(names))[:subset]
        names, batch = [names[i] for i in pick], batch[:, pick]
    online = stepped(names, prices, kinds, targets, cfg, labels)
    np.testing.assert_array_equal(np.isnan(online), np.isnan(batch))
    np.testing.assert_allclose(online, batch, rtol=1e-5, atol=1e-9, equal_nan=True)
    for warm in (5, prices.height // 2):                      # a block taken in at once, then days
        online = stepped(names, prices, kinds, targets, cfg, labels, warm=warm)
        np.testing.assert_allclose(online[warm:], batch[warm:], rtol=1e-5, atol=1e-9, equal_nan=True)
    return names


def prices_and_labels(folder: Path, days: int):
    """The last `days` of a dataset's train file, and its labels on the same dates."""
    data = read_dataset(folder)
    prices = data.train.tail(days)
    labels = prices.select("date_id").join(data.train_labels, on="date_id", how="left")
    assert (np.diff(prices["date_id"].to_numpy()) == 1).all()
    return data, prices, labels.select([t.name for t in data.targets]).to_numpy().astype(np.float64)


def test_online_equals_batch_on_the_embedded_market(tiny_dataset):
    data, prices, labels = prices_and_labels(tiny_dataset, 260)
    names = assert_equal_features(prices, data.targets, labels)
    assert any(n.endswith("__revealed") for n in names) and any(n.startswith("spread[") for n in names)
    assert_equal_features(prices, data.targets, labels, subset=40)
    assert_equal_features(prices, data.targets, labels,
                          cfg=FeaturesConfig(return_horizons=[2, 7], vol_window=5, level_window=9, spread_z_window=4))


def test_online_equals_batch_with_holidays_gaps_and_non_positive_prices():
    rng = np.random.default_rng(1)
    n = 200
    a = np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    b = np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    a[rng.random(n) < 0.1] = np.nan                          # holidays
    b[:40] = np.nan                                          # a late-starting market
    level = np.cumsum(rng.normal(0, 1, n))                   # signed: a level column
    volume = rng.integers(0, 1000, n).astype(float)
    volume[rng.random(n) < 0.05] = np.nan
    prices = pl.DataFrame({"date_id": np.arange(n), "A_Close": a, "B_Close": b, "RATE": level,
                           "X_Volume": volume})
    targets = [Target("target_0", 1, "A_Close", "B_Close"), Target("target_1", 2, "A_Close", None)]
    assert_equal_features(prices, targets, cfg=FeaturesConfig(level_window=30))


@pytest.mark.skipif(not REAL_DEV.is_dir(), reason="../shared/real_dev is not present")
def test_online_equals_batch_on_real_prices():
    data, prices, labels = prices_and_labels(REAL_DEV, 400)
    assert_equal_features(prices, data.targets, labels)


def test_online_equals_batch_on_the_real_sample_layout(kaggle_sample):
    prices = pl.read_csv(kaggle_sample / "test.csv", infer_schema_length=0).drop("is_scored").with_columns(
        pl.col("date_id").cast(pl.Int64), pl.exclude("date_id").cast(pl.Float64))
    pairs = pl.read_csv(kaggle_sample / "target_pairs.csv")
    targets = []
    for name, lag, pair in pairs.iter_rows():
        parts = pair.split(" - ")
        targets.append(Target(name, lag, parts[0], parts[1] if len(parts) > 1 else None))
    assert_equal_features(prices, targets, cfg=FeaturesConfig(level_window=30, spread_z_window=10))
