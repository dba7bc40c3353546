import numpy as np
import polars as pl
import pytest

from spreadcast.data.targets import (DataError, compute_labels, forward_spread, is_revealed, parse_pair,
                                    publication_date)


def test_parse_pair():
    assert parse_pair("A - B", "f") == ("A", "B")
    assert parse_pair("JPX_Gold_Rolling-Spot_Futures_Close", "f") == ("JPX_Gold_Rolling-Spot_Futures_Close", None)
    for bad in ("A -B", "A - B - C", " A", "", "A -  B"):
        with pytest.raises(DataError, match="f: "):
            parse_pair(bad, "f")


def test_forward_spread_formula():
    logp = np.log(np.array([[1.0, 2.0], [2.0, 2.0], [4.0, 3.0], [8.0, 3.0], [16.0, 6.0]]))
    got = forward_spread(logp, 0, 1, lag=2)
    # t=0: log(P_A[3]/P_A[1]) - log(P_B[3]/P_B[1]) = log 4 - log 1.5
    assert got[0] == pytest.approx(np.log(4.0) - np.log(1.5))
    assert got[1] == pytest.approx(np.log(4.0) - np.log(2.0))
    assert np.isnan(got[2:]).all()
    single = forward_spread(logp, 0, None, lag=1)
    assert single[0] == pytest.approx(np.log(2.0))


def test_reveal_rule():
    assert publication_date(10, 1) == 12 and publication_date(10, 4) == 15
    assert is_revealed(10, 1, 12) and not is_revealed(10, 1, 11)
    assert is_revealed(10, 4, 15) and not is_revealed(10, 4, 14)
    np.testing.assert_array_equal(is_revealed(np.array([5, 6, 7]), 2, 9), [True, True, False])


def test_formula_matches_real_lagged_labels(kaggle_sample):
    """Recompute the published lagged label files from test.csv prices (to 1e-6)."""
    ds = read_dataset_without_train(kaggle_sample)
    test, targets = ds
    dates = test["date_id"].to_numpy()
    columns = sorted({c for t in targets for c in t.columns})
    logp = np.log(test.select(columns).to_numpy())
    labels = compute_labels(logp, columns, targets)
    compared = 0
    for lag in (1, 2, 3, 4):
        published = pl.read_csv(kaggle_sample / "lagged_test_labels" / f"test_labels_lag_{lag}.csv")
        assert (published["label_date_id"] == published["date_id"] - lag - 1).all()
        names = [t.name for t in targets if t.lag == lag]
        rows = {int(d): i for i, d in enumerate(dates)}
        for row in published.iter_rows(named=True):
            i = rows.get(row["label_date_id"])
            if i is None:
                continue
            for name in names:
                expected, got = row[name], labels[i, [t.name for t in targets].index(name)]
                if expected is not None and np.isfinite(got):
                    assert got == pytest.approx(expected, abs=1e-6), (lag, row["label_date_id"], name)
                    compared += 1
    assert compared > 20_000


def read_dataset_without_train(folder):
    from spreadcast.data.layout import _date_ids, _numeric, _read_raw, read_target_pairs

    raw = _read_raw(folder / "test.csv")
    features = [c for c in raw.columns if c not in ("date_id", "is_scored")]
    test = _numeric(raw, folder / "test.csv", features, _date_ids(raw, folder / "test.csv"))
    return test, read_target_pairs(folder / "target_pairs.csv", features)
