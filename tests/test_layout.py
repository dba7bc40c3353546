import shutil

import polars as pl
import pytest

from spreadcast.data.layout import read_dataset
from spreadcast.data.targets import DataError

from conftest import edit_csv, set_cell


def test_reads_generated_dataset(tiny_dataset, tiny_cfg):
    ds = read_dataset(tiny_dataset, lags=[1, 2, 3, 4])
    assert ds.train.height == tiny_cfg.n_train_days
    assert len(ds.targets) == 4 * tiny_cfg.targets_per_lag
    assert ds.test is not None and ds.test["is_scored"].sum() == tiny_cfg.n_scored_days
    assert set(ds.lagged) == {1, 2, 3, 4}
    assert ds.features == [c for c in pl.read_csv(tiny_dataset / "train.csv", n_rows=1).columns if c != "date_id"]


def test_missing_file(tiny_dataset):
    (tiny_dataset / "target_pairs.csv").unlink()
    with pytest.raises(DataError, match=r"target_pairs\.csv: file not found"):
        read_dataset(tiny_dataset)


def test_missing_lagged_file(tiny_dataset):
    (tiny_dataset / "lagged_test_labels" / "test_labels_lag_3.csv").unlink()
    with pytest.raises(DataError, match=r"test_labels_lag_3\.csv: file not found"):
        read_dataset(tiny_dataset)


def test_missing_column_in_test(tiny_dataset):
    edit_csv(tiny_dataset / "test.csv", lambda df: df.drop("LME_AH_Close"))
    with pytest.raises(DataError, match=r"test\.csv: missing column 'LME_AH_Close'"):
        read_dataset(tiny_dataset)


def test_pair_naming_unknown_column(tiny_dataset):
    set_cell(tiny_dataset / "target_pairs.csv", "target", "target_3", "pair", "LME_AH_Close - NOPE")
    with pytest.raises(DataError, match=r"target_pairs\.csv: row 5 \(target_3\): pair names unknown column 'NOPE'"):
        read_dataset(tiny_dataset)


def test_malformed_pair(tiny_dataset):
    set_cell(tiny_dataset / "target_pairs.csv", "target", "target_0", "pair", "A-B - C - D")
    with pytest.raises(DataError, match=r"row 2 \(target_0\): malformed pair 'A-B - C - D'"):
        read_dataset(tiny_dataset)


def test_lag_outside_range(tiny_dataset):
    set_cell(tiny_dataset / "target_pairs.csv", "target", "target_1", "lag", "5")
    with pytest.raises(DataError, match=r"row 3 \(target_1\): lag 5 is outside 1\.\.4"):
        read_dataset(tiny_dataset)


def test_lags_must_match_params(tiny_dataset):
    with pytest.raises(DataError, match=r"lags \[1, 2, 3, 4\] differ from params data.lags \[1, 2\]"):
        read_dataset(tiny_dataset, lags=[1, 2])


def test_non_numeric_cell(tiny_dataset):
    set_cell(tiny_dataset / "train.csv", "date_id", "17", "FX_AUDJPY", "abc")
    with pytest.raises(DataError, match=r"train\.csv: column 'FX_AUDJPY', date_id 17: non-numeric or non-finite value 'abc'"):
        read_dataset(tiny_dataset)


def test_non_positive_target_price(tiny_dataset):
    pairs = pl.read_csv(tiny_dataset / "target_pairs.csv")
    column = pairs["pair"][0].split(" - ")[0]
    set_cell(tiny_dataset / "train.csv", "date_id", "40", column, "-1.5")
    with pytest.raises(DataError, match=rf"train\.csv: column '{column}', date_id 40: price -1.5 is not positive"):
        read_dataset(tiny_dataset)


@pytest.mark.parametrize("kind", ["duplicate", "unsorted"])
def test_bad_date_order(tiny_dataset, kind):
    def corrupt(df):
        ids = df["date_id"].to_list()
        ids[10] = ids[9] if kind == "duplicate" else str(int(ids[9]) - 3)
        return df.with_columns(pl.Series("date_id", ids))
    edit_csv(tiny_dataset / "train.csv", corrupt)
    with pytest.raises(DataError, match=rf"train\.csv: {kind} date_id \S+ at row 12"):
        read_dataset(tiny_dataset)


def test_label_date_disagrees(tiny_dataset):
    path = tiny_dataset / "lagged_test_labels" / "test_labels_lag_2.csv"
    edit_csv(path, lambda df: df.with_columns((pl.col("label_date_id").cast(pl.Int64) + 1).cast(pl.String)))
    with pytest.raises(DataError, match=r"label_date_id \d+ should be date_id - 2 - 1"):
        read_dataset(tiny_dataset)


def test_train_labels_optional(tiny_dataset):
    (tiny_dataset / "train_labels.csv").unlink()
    assert read_dataset(tiny_dataset).train_labels is None


def test_test_optional(tiny_dataset):
    (tiny_dataset / "test.csv").unlink()
    shutil.rmtree(tiny_dataset / "lagged_test_labels")
    ds = read_dataset(tiny_dataset)
    assert ds.test is None and ds.lagged == {}


def test_any_feature_names_and_target_count(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    pl.DataFrame({"date_id": list(range(12)), "alpha": [float(i + 1) for i in range(12)],
                  "beta gamma": [2.0] * 12}).write_csv(folder / "train.csv")
    pl.DataFrame({"target": ["t0"], "lag": [3], "pair": ["alpha"]}).write_csv(folder / "target_pairs.csv")
    ds = read_dataset(folder, lags=[3])
    assert ds.features == ["alpha", "beta gamma"] and ds.lags == [3]
