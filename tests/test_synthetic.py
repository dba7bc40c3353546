import numpy as np
import polars as pl

from spreadcast.config import SyntheticConfig
from spreadcast.data import synthetic
from spreadcast.data.layout import read_dataset
from spreadcast.evaluation import metric
from spreadcast.io import sha256_file


def test_deterministic_by_seed(tmp_path, tiny_cfg):
    for name in ("a", "b"):
        synthetic.write(synthetic.generate(tiny_cfg), tmp_path / name / "ds", tmp_path / name / "oracle", tiny_cfg)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) >= 10
    for f in files:
        assert sha256_file(tmp_path / "a" / f) == sha256_file(tmp_path / "b" / f), f
    other = SyntheticConfig(**{**tiny_cfg.__dict__, "seed": tiny_cfg.seed + 1})
    synthetic.write(synthetic.generate(other), tmp_path / "c" / "ds", tmp_path / "c" / "oracle", other)
    assert sha256_file(tmp_path / "a/ds/train.csv") != sha256_file(tmp_path / "c/ds/train.csv")


def test_layout_and_sizes(tiny_dataset, tiny_cfg):
    ds = read_dataset(tiny_dataset, lags=tiny_cfg.lags)
    assert ds.test.height == tiny_cfg.n_test_days
    assert ds.test["date_id"][0] == tiny_cfg.n_train_days          # test follows train by default
    for lag, frame in ds.lagged.items():
        assert (frame["label_date_id"] == frame["date_id"] - lag - 1).all()
        assert frame["label_date_id"].to_list() == ds.test["date_id"].to_list()


def test_default_size_is_competition_like():
    cfg = SyntheticConfig()
    assert 1800 <= cfg.n_train_days <= 2000 and 120 <= cfg.n_test_days <= 140
    n_columns = cfg.n_lme + 7 * cfg.n_jpx + 5 * cfg.n_us + cfg.n_fx
    assert 500 <= n_columns <= 600 and 90 <= cfg.targets_per_lag <= 110


def test_ohlc_volumes_and_calendars(tiny_dataset):
    train = pl.read_csv(tiny_dataset / "train.csv")
    for stem in ("US_Stock_ACWI_adj", "JPX_Gold_Mini_Futures"):
        lower = stem.startswith("US")
        o, h, l, c = (train[f"{stem}_{f.lower() if lower else f}"].to_numpy()
                      for f in ("Open", "High", "Low", "Close"))
        ok = np.isfinite(c)
        assert (l[ok] <= np.minimum(o[ok], c[ok]) + 1e-9).all() and (h[ok] >= np.maximum(o[ok], c[ok]) - 1e-9).all()
    assert (train["US_Stock_ACWI_adj_volume"].drop_nulls() > 0).all()
    assert (train["JPX_Gold_Mini_Futures_open_interest"].drop_nulls() > 0).all()
    # holidays: a market's columns are empty together, and FX never closes
    us = train.select(pl.selectors.starts_with("US_Stock_ACWI")).to_numpy()
    assert (np.isnan(us).all(axis=1) == np.isnan(us).any(axis=1)).all()
    assert np.isnan(us).any()
    assert not np.isnan(train.select(pl.selectors.starts_with("FX_")).to_numpy()).any()


def test_ceiling_is_the_conditional_expectation(tmp_path):
    """Labels regressed on the oracle's expectation have slope ~1 and it ranks them well."""
    cfg = SyntheticConfig(seed=11, n_train_days=1500, n_test_days=30, n_scored_days=30, n_us=20, n_fx=8,
                          n_jpx=2, targets_per_lag=30)
    market = synthetic.generate(cfg)
    names = [c for c in market.ceiling.columns if c != "date_id"]
    labels = market.train_labels.select(names).to_numpy()[50:1400]
    ceiling = market.ceiling.select(names).to_numpy()[50:1400]
    ok = np.isfinite(labels)
    slope = (labels[ok] * ceiling[ok]).sum() / (ceiling[ok] ** 2).sum()
    assert 0.85 < slope < 1.15
    assert metric.summary(labels, ceiling)["sharpe"] > 0.5
    shuffled = np.random.default_rng(0).permutation(ceiling, axis=0)
    assert abs(metric.summary(labels, shuffled)["sharpe"]) < 0.2
