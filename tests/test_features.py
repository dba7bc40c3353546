import numpy as np
import polars as pl
import pytest

from spreadcast.config import FeaturesConfig, PrescreenConfig, ScaleConfig, WindowsConfig
from spreadcast.features import scaling
from spreadcast.data.layout import read_dataset
from spreadcast.data.targets import Target, compute_labels
from spreadcast.features.engineer import column_kind, engineer, revealed_labels
from spreadcast.features.prescreen import prescreen, usable
from spreadcast.errors import SplitError
from spreadcast.features.splits import make_splits
from spreadcast.features.windows import Windows


def test_returns_span_holidays_on_own_calendar():
    prices = pl.DataFrame({"date_id": [0, 1, 2, 3, 4], "A_Close": [1.0, 2.0, None, 8.0, 16.0]})
    names, x = engineer(prices, FeaturesConfig(return_horizons=[1, 2], vol_window=2, level_window=2,
                                               deviation_halflives=[]))
    assert names == ["A_Close__ret1", "A_Close__ret2", "A_Close__vol2", "A_Close__z2"]
    assert np.isnan(x[0, 0]) and x[1, 0] == pytest.approx(np.log(2))
    assert np.isnan(x[2, 0])                                  # holiday: missing, not a zero return
    assert x[3, 0] == pytest.approx(np.log(4))                # spans the holiday
    assert x[3, 1] == pytest.approx(np.log(8)) and x[4, 1] == pytest.approx(np.log(8))


def test_deviation_and_level_features_on_own_calendar():
    """A pair's deviation is its log spread minus the exponentially weighted mean of the last 4
    half-lives of observations (a holiday is skipped, not counted); a signed series also gives
    its level."""
    a = [1.0, 2.0, None, 8.0, 16.0, 4.0]
    rate = [-0.5, 0.25, 0.75, None, -1.0, 2.0]
    prices = pl.DataFrame({"date_id": list(range(6)), "A_Close": a, "B_Close": [1.0] * 6, "RATE": rate})
    names, x = engineer(prices, FeaturesConfig(return_horizons=[1], vol_window=2, level_window=2,
                                               spread_z_window=2, deviation_halflives=[0.75]),
                        targets=[Target("t0", 1, "A_Close", "B_Close")])
    assert names == ["A_Close__ret1", "A_Close__vol2", "A_Close__z2", "B_Close__ret1", "B_Close__vol2",
                     "B_Close__z2", "RATE__diff", "RATE__z2", "RATE__level",
                     "spread[A_Close|B_Close]__chg1", "spread[A_Close|B_Close]__z2",
                     "spread[A_Close|B_Close]__dev0.75"]
    dev = x[:, names.index("spread[A_Close|B_Close]__dev0.75")]
    w = 0.5 ** (np.arange(2, -1, -1) / 0.75)                 # 3 observations: ceil(4 * 0.75)
    w /= w.sum()
    observed = np.log([1.0, 2.0, 8.0, 16.0, 4.0])              # log A - log 1
    assert np.isnan(dev[:3]).all()                           # 2 observations by date 2 (a holiday)
    assert dev[3] == pytest.approx(observed[2] - w @ observed[:3])
    assert dev[5] == pytest.approx(observed[4] - w @ observed[2:5])
    level = x[:, names.index("RATE__level")]
    np.testing.assert_array_equal(level, np.array(rate, dtype=float))


def test_column_kinds():
    assert column_kind("X_Volume", np.array([0.0, 5.0])) == "volume"
    assert column_kind("X_Close", np.array([1.0, 2.0])) == "price"
    assert column_kind("spread", np.array([-1.0, 2.0])) == "level"


def test_features_have_no_look_ahead(tiny_dataset):
    """Perturbing every price after date t leaves every feature at or before t bitwise unchanged."""
    prices = pl.read_csv(tiny_dataset / "train.csv", infer_schema_length=0).with_columns(
        pl.col("date_id").cast(pl.Int64), pl.exclude("date_id").cast(pl.Float64))
    names, base = engineer(prices, FeaturesConfig())
    t = 150
    rng = np.random.default_rng(0)
    columns = [c for c in prices.columns if c != "date_id"]
    perturbed = prices.with_columns([
        pl.when(pl.col("date_id") > t).then(pl.col(c) * float(rng.uniform(0.5, 2.0))).otherwise(pl.col(c)).alias(c)
        for c in columns])
    _, after = engineer(perturbed, FeaturesConfig())
    np.testing.assert_array_equal(base[: t + 1], after[: t + 1])
    assert not np.array_equal(base[t + 1:], after[t + 1:], equal_nan=True)

    # with target spreads and revealed labels, each computed from its own prices
    targets = read_dataset(tiny_dataset, lags=[1, 2, 3, 4]).targets
    engineered = []
    for frame in (prices, perturbed):
        log_prices = np.log(frame.select(columns).to_numpy())
        labels = compute_labels(log_prices, columns, targets)
        engineered.append(engineer(frame, FeaturesConfig(), targets, labels))
    (names, base), (_, after) = engineered
    assert sum(n.endswith("__revealed") for n in names) == len(targets)
    assert any(n.startswith("spread[") for n in names)
    np.testing.assert_array_equal(base[: t + 1], after[: t + 1])
    assert not np.array_equal(base[t + 1:], after[t + 1:], equal_nan=True)


def test_revealed_labels_enter_on_their_publication_day():
    """Row t carries the label of date t - lag - 1 and nothing later; a lagged-file label is used
    from the day it is published, and one that claims an earlier day is ignored."""
    dates = np.arange(20, dtype=np.int64)
    targets = [Target(f"t{k}", k, "A", None) for k in (1, 2, 3, 4)]
    labels = dates[:, None] * 10.0 + np.arange(4)[None, :]          # label of date d, target j: 10 d + j
    labels[15:] = np.nan                                            # not in the training files
    revealed = pl.DataFrame({"date_id": [17, 18, 18], "label_date_id": [15, 15, 16],
                             "target": ["t1", "t2", "t1"], "value": [-1.0, -2.0, -3.0], "lag": [1, 2, 1]})
    # t1 of date 15 is published on 17, t2 of date 15 on 18 (not 17), t1 of date 16 on 18
    early = pl.DataFrame({"date_id": [18], "label_date_id": [16], "target": ["t3"], "value": [-9.0], "lag": [3]})
    out = revealed_labels(dates, labels, pl.concat([revealed, early]), targets)
    for j, t in enumerate(targets):
        shift = t.lag + 1
        assert np.isnan(out[:shift, j]).all()
        np.testing.assert_array_equal(out[shift:15 + shift, j], labels[:15, j])
    assert out[17, 0] == -1.0 and out[18, 0] == -3.0 and out[18, 1] == -2.0
    assert out[17, 1] == 141.0 and np.isnan(out[19, 0])            # t2 of date 14; t1 of date 17 unknown
    assert not (out == -9.0).any()                                 # claimed published before d + lag + 1


def test_prescreen_reasons_and_ranking():
    rng = np.random.default_rng(0)
    n = 400
    y = rng.standard_normal((n, 3))
    good = y[:, 0] + 0.5 * rng.standard_normal(n)
    feats = np.column_stack([good, good * 2.0 + 1e-12, np.ones(n), np.where(rng.random(n) < 0.8, np.nan, 1.0),
                             rng.standard_normal(n)])
    names = ["good", "zdup", "const", "holey", "noise"]
    kept, report = prescreen(feats, names, y, PrescreenConfig(max_missing=0.5, top_k=10))
    reasons = {r["feature"]: r["reason"] for r in report}
    assert kept == ["good", "noise"]
    assert reasons["zdup"].startswith("near-duplicate of good")
    assert reasons["const"].startswith("constant")
    assert reasons["holey"].startswith("missing")
    kept, report = prescreen(feats, names, y, PrescreenConfig(top_k=1))
    assert kept == ["good"] and {r["feature"]: r["reason"] for r in report}["noise"] == "beyond top_k 1"
    # the label-blind checks alone (what the level features exported beyond the screen pass)
    assert usable(feats, names, PrescreenConfig(max_missing=0.5)) == ["good", "zdup", "noise"]


@pytest.mark.parametrize("method", ["standard", "robust"])
def test_scaling_fit_on_given_rows(method):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 2)) * [2.0, 5.0] + [1.0, -3.0]
    s = scaling.fit(x, ["a", "b"], rng.standard_normal((500, 1)), ["t"], ScaleConfig(method=method, clip=3.0))
    z = s.transform(x)
    assert np.abs(np.median(z, axis=0)).max() < 0.15 and np.abs(z).max() <= 3.0
    assert scaling.Scaler.from_dict(s.to_dict()).transform(x) == pytest.approx(z)
    assert s.subset(["b"]).transform(x[:, [1]]) == pytest.approx(z[:, [1]])      # what serving scales
    with pytest.raises(KeyError, match="'c' has no scaling statistics"):
        s.subset(["b", "c"])


def test_splits_are_ordered_with_embargo():
    labelled = np.ones(600, dtype=bool)
    labelled[:3] = False
    cfg = WindowsConfig(history=10, val_days=100, holdout_days=80, embargo=5)
    s = make_splits(labelled, cfg, max_lag=4)
    assert s.train[0] == 9 and s.holdout.size == 80 and s.val.size == 100
    assert s.val[0] - s.train[-1] > 5 and s.holdout[0] - s.val[-1] > 5
    with pytest.raises(SplitError, match="embargo 4 is below max lag \\+ 1 = 5"):
        make_splits(labelled, _cfg(embargo=4), max_lag=4)
    with pytest.raises(SplitError, match="labelled days"):
        make_splits(labelled[:200], cfg, max_lag=4)


def test_splits_saved_once_load_on_their_own_date_axis_only(tmp_path):
    """The split stage's file gives the same rows back, and refuses data on another date axis."""
    from spreadcast.features import splits as date_splits

    labelled = np.ones(600, dtype=bool)
    s = make_splits(labelled, WindowsConfig(history=10, val_days=100, holdout_days=80, embargo=5), max_lag=4)
    dates = np.arange(100, 700)
    s.save(tmp_path, dates, embargo=5)
    back = date_splits.load(tmp_path, dates)
    for name in ("train", "val", "holdout"):
        np.testing.assert_array_equal(getattr(back, name), getattr(s, name))
    with pytest.raises(SplitError, match="rerun the split stage"):
        date_splits.load(tmp_path, np.arange(100, 701))


def _cfg(**kw):
    cfg = WindowsConfig()
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_windows_are_views_matching_explicit_slices():
    import torch

    x = torch.arange(50 * 3, dtype=torch.float32).reshape(50, 3)
    m = torch.zeros_like(x)
    y = torch.arange(50 * 2, dtype=torch.float32).reshape(50, 2)
    w = Windows(x, m, y, history=7)
    assert w._x.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    xb, mb, yb = w.batch(np.array([6, 20, 49]))
    assert xb.shape == (3, 7, 3)
    torch.testing.assert_close(xb[1], x[14:21])
    torch.testing.assert_close(yb[2], y[49])


def test_transform_parquet_matches_in_memory_transform(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 5)) * 3
    x[rng.random(x.shape) < 0.2] = np.nan
    names = [f"f{i}" for i in range(5)]
    pl.DataFrame({n: x[:, i] for i, n in enumerate(names)}).write_parquet(tmp_path / "f.parquet")
    s = scaling.fit(x, names, rng.standard_normal((50, 1)), ["t"], ScaleConfig(clip=1.5))
    values, missing = s.transform_parquet(tmp_path / "f.parquet", chunk=2)
    expected = s.transform(x)
    np.testing.assert_array_equal(missing.astype(bool), np.isnan(x))
    np.testing.assert_allclose(values, np.nan_to_num(expected).astype(np.float32))


def test_prescreen_groups_a_columns_features():
    rng = np.random.default_rng(4)
    n = 500
    y = rng.standard_normal((n, 2))
    strong = y[:, 0] + 0.3 * rng.standard_normal(n)
    weak_sibling = rng.standard_normal(n)            # same source column, no signal of its own
    other = y[:, 1] + 1.5 * rng.standard_normal(n)
    feats = np.column_stack([strong, weak_sibling, other])
    names = ["A__ret5", "A__ret1", "B__ret5"]
    grouped, _ = prescreen(feats, names, y, PrescreenConfig(top_k=2, group_by_column=True))
    plain, _ = prescreen(feats, names, y, PrescreenConfig(top_k=2, group_by_column=False))
    assert grouped == ["A__ret5", "A__ret1"]
    assert plain == ["A__ret5", "B__ret5"]


def test_a_label_blind_screen_keeps_as_many_whatever_the_labels():
    rng = np.random.default_rng(5)
    n, columns = 300, 40
    x = rng.standard_normal((n, 3 * columns))
    names = [f"C{c}__{k}" for c in range(columns) for k in ("ret1", "ret5", "z20")]
    y = x[:, :2] + 0.1 * rng.standard_normal((n, 2))        # column C0 carries the signal
    cfg = PrescreenConfig(top_k=9, rank_by="random")
    blind, report = prescreen(x, names, y, cfg)
    assert len(blind) == 9 and len({f.split("__")[0] for f in blind}) == 3     # three whole columns
    assert prescreen(x, names, rng.permutation(y), cfg)[0] == blind           # the labels play no part
    assert prescreen(x, names, y, PrescreenConfig(top_k=9))[0][0].startswith("C0__")
    assert {r["feature"] for r in report if r["kept"]} == set(blind)


def test_an_ic_in_blocks_finds_a_relation_that_turned_sign():
    rng = np.random.default_rng(6)
    n = 600
    y = rng.standard_normal((n, 3))
    sign = np.where(np.arange(n) < n // 2, 1.0, -1.0)                    # the relation flips halfway
    flipped = sign * y[:, 0] + 1.0 * rng.standard_normal(n)
    steady = y[:, 1] + 4.0 * rng.standard_normal(n)                     # weaker, but the same all along
    noise = rng.standard_normal((n, 6))
    feats = np.column_stack([flipped, steady, noise])
    names = ["F__ret1", "S__ret1"] + [f"N{k}__ret1" for k in range(6)]
    whole, _ = prescreen(feats, names, y, PrescreenConfig(top_k=1, ic_blocks=1))
    halves, report = prescreen(feats, names, y, PrescreenConfig(top_k=1, ic_blocks=2))
    assert whole == ["S__ret1"]          # over all days the flipped relation cancels
    assert halves == ["F__ret1"]
    score = {r["feature"]: r["score"] for r in report}
    assert score["F__ret1"] > 2 * max(score[f"N{k}__ret1"] for k in range(6))
