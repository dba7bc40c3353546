import numpy as np
import pytest
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


ZOO_SIZE = dict(seed=5, n_train_days=1500, n_test_days=30, n_scored_days=30, n_us=30, n_jpx=3, n_fx=12,
                targets_per_lag=40, signal_strength=0.0)
MECHANISMS = {
    "lead_lag": dict(signal_strength=0.12),
    "levels": dict(level_strength=0.06, n_levels=3),
    "reversion": dict(reversion_strength=0.04),
    "drift": dict(drift_strength=0.06),
    "mixed": dict(signal_strength=0.08, level_strength=0.04, n_levels=2, reversion_strength=0.02,
                  drift_strength=0.03, vol_shock_rate=0.01, tail_df=3.0),
    "flip": dict(signal_strength=0.12, regime_day=800, regime_factor=-1.0),
}


def _labels_and_oracle(overrides: dict) -> tuple[np.ndarray, np.ndarray, synthetic.Market]:
    market = synthetic.generate(SyntheticConfig(**{**ZOO_SIZE, **overrides}))
    names = [c for c in market.ceiling.columns if c != "date_id"]
    labels = market.train_labels.select(names).to_numpy()[50:1490]
    oracle = market.ceiling.select(names).to_numpy()[50:1490]
    return labels, oracle, market


def _mse(labels: np.ndarray, forecast: np.ndarray) -> float:
    ok = np.isfinite(labels)
    return float(((labels[ok] - forecast[ok]) ** 2).mean())


@pytest.mark.parametrize("name", list(MECHANISMS))
def test_each_oracle_beats_its_perturbations(name):
    """The oracle is the conditional expectation: labels regress on it with slope ~1, and it has a
    lower squared error than the same oracle scaled, a day stale, or blurred by noise."""
    labels, oracle, _ = _labels_and_oracle(MECHANISMS[name])
    ok = np.isfinite(labels)
    slope = (labels[ok] * oracle[ok]).sum() / (oracle[ok] ** 2).sum()
    assert 0.8 < slope < 1.2, slope
    own = _mse(labels, oracle)
    noise = np.random.default_rng(0).standard_normal(oracle.shape) * oracle.std()
    perturbed = {"x0.5": 0.5 * oracle, "x1.5": 1.5 * oracle, "noisy": oracle + noise}
    if name != "drift":                                      # a constant oracle has no stale version
        perturbed["stale"] = np.vstack([oracle[:1], oracle[:-1]])
    for what, forecast in perturbed.items():
        assert own < _mse(labels, forecast), what
    assert metric.summary(labels, oracle)["sharpe"] > 0.4


def test_regime_switch_flips_the_oracle():
    """After the switch the flipped oracle is right and the unswitched one is wrong-signed."""
    labels, oracle, _ = _labels_and_oracle(MECHANISMS["flip"])
    _, unswitched, _ = _labels_and_oracle({**MECHANISMS["flip"], "regime_factor": 1.0})
    after = slice(800 - 50 + 10, None)
    assert metric.summary(labels[after], oracle[after])["sharpe"] > 0.4
    assert metric.summary(labels[after], unswitched[after])["sharpe"] < -0.4
    before = slice(0, 800 - 50 - 10)
    np.testing.assert_allclose(oracle[before], unswitched[before])


def test_null_market_has_no_signal_and_drift_favours_a_constant_ranking():
    labels, oracle, _ = _labels_and_oracle({})
    assert np.all(oracle == 0.0)
    labels, oracle, _ = _labels_and_oracle(MECHANISMS["drift"])
    assert np.allclose(oracle, oracle[:1])                    # the same forecast every day


def test_zoo_layout_levels_late_market_and_mechanism_streams(tmp_path):
    """Levels are published as signed RATE_k columns; a late JPX market is empty before its
    start; adding a mechanism leaves the other mechanisms' draws as they were."""
    cfg = SyntheticConfig(**{**ZOO_SIZE, "n_train_days": 300, **MECHANISMS["levels"], "late_start_days": 100})
    market = synthetic.generate(cfg)
    rates = market.train.select(pl.selectors.starts_with("RATE_")).to_numpy()
    assert rates.shape[1] == 3 and np.isfinite(rates).all() and (rates < 0).any()
    jpx = market.train.select(pl.selectors.starts_with("JPX_")).to_numpy()
    assert np.isnan(jpx[:100]).all() and np.isfinite(jpx[100:]).any()
    plain = synthetic.generate(SyntheticConfig(**{**ZOO_SIZE, "n_train_days": 300, "signal_strength": 0.1}))
    mixed = synthetic.generate(SyntheticConfig(**{**ZOO_SIZE, "n_train_days": 300, "signal_strength": 0.1,
                                                  "drift_strength": 0.05}))
    assert plain.leaders == mixed.leaders
    assert plain.train.select(plain.leaders).equals(mixed.train.select(mixed.leaders))
    assert not plain.train.equals(mixed.train)
    synthetic.write(market, tmp_path / "ds", tmp_path / "oracle", cfg)
    ds = read_dataset(tmp_path / "ds", lags=cfg.lags)
    assert "RATE_1" in ds.test.columns


def test_each_mechanisms_part_of_the_ceiling_adds_up_to_it():
    """`generate(ceiling_of=...)` gives one mechanism's part of the oracle's expectation, the
    market unchanged: on the mixed market the four parts add up to the ceiling, each part is a
    real share of it (none zero, none the whole), and a mechanism the market lacks has none."""
    cfg = SyntheticConfig(**{**ZOO_SIZE, "n_train_days": 300, **MECHANISMS["mixed"], "regime_day": 200,
                             "regime_factor": 0.5})
    whole = synthetic.generate(cfg)
    parts = {name: synthetic.generate(cfg, name) for name in synthetic.MECHANISMS}
    for market in parts.values():
        assert market.train.equals(whole.train) and market.train_labels.equals(whole.train_labels)
    ceiling = whole.ceiling.drop("date_id").to_numpy()
    values = {name: m.ceiling.drop("date_id").to_numpy() for name, m in parts.items()}
    assert np.allclose(sum(values.values()), ceiling, rtol=0, atol=1e-12)
    for name, part in values.items():
        assert 0.01 < np.nanstd(part) / np.nanstd(ceiling) < 0.99, name
    drift_only = SyntheticConfig(**{**ZOO_SIZE, "n_train_days": 300, **MECHANISMS["drift"]})
    assert np.all(synthetic.generate(drift_only, "lead_lag").ceiling.drop("date_id").to_numpy() == 0.0)
    with pytest.raises(ValueError, match="'momentum'.*lead_lag"):
        synthetic.generate(cfg, "momentum")
