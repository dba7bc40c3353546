import numpy as np
import polars as pl
import pytest

from spreadcast.config import SyntheticConfig
from spreadcast.data import synthetic
from spreadcast.data.ingest import ingest, load_ingested
from spreadcast.data.layout import read_dataset
from spreadcast.io import read_json


def run_ingest(dataset, out):
    out.mkdir()
    return ingest(read_dataset(dataset), out, tolerance=1e-6)


def test_labels_match_recomputation_and_unpublished_are_masked(tiny_dataset, tmp_path, tiny_cfg):
    registry = run_ingest(tiny_dataset, tmp_path / "out")
    check = read_json(tmp_path / "out" / "label_check.json")
    assert check["provided"] and check["compared_cells"] > 1000 and check["mismatched_cells"] == 0
    data = load_ingested(tmp_path / "out")
    last = registry["train_dates"][1]
    lags = np.array([t.lag for t in data.targets])
    train_rows = data.date_ids <= last
    published = data.date_ids[train_rows, None] + lags[None, :] + 1 <= last
    assert np.isnan(data.labels[train_rows][~published]).all()
    assert np.isfinite(data.labels[train_rows][published]).mean() > 0.8
    assert check["masked_unpublished"] > 0
    # test days follow train: prices extend past it, labels stop with it
    assert data.date_ids[-1] == tiny_cfg.n_train_days + tiny_cfg.n_test_days - 1
    assert np.isnan(data.labels[~train_rows]).all()


def test_differences_from_provided_labels_are_reported(tiny_dataset, tmp_path):
    path = tiny_dataset / "train_labels.csv"
    df = pl.read_csv(path)
    df.with_columns(pl.when(pl.col("date_id") == 30).then(pl.col("target_2") + 0.01)
                    .otherwise(pl.col("target_2")).alias("target_2")).write_csv(path)
    run_ingest(tiny_dataset, tmp_path / "out")
    check = read_json(tmp_path / "out" / "label_check.json")
    assert check["mismatched_cells"] == 1 and check["worst_target"] == "target_2"
    assert check["max_abs_diff"] == pytest.approx(0.01, rel=1e-6)


def test_without_train_labels_recomputes(tiny_dataset, tmp_path):
    (tiny_dataset / "train_labels.csv").unlink()
    run_ingest(tiny_dataset, tmp_path / "out")
    assert read_json(tmp_path / "out" / "label_check.json")["provided"] is False
    assert np.isfinite(load_ingested(tmp_path / "out").labels).sum() > 1000


def test_overlapping_test_days_use_train_rows(tmp_path):
    cfg = SyntheticConfig(seed=5, n_train_days=200, n_test_days=20, n_scored_days=10, overlap_days=15,
                          n_lme=1, n_jpx=1, n_us=3, n_fx=2, targets_per_lag=4)
    synthetic.write(synthetic.generate(cfg), tmp_path / "ds", tmp_path / "oracle", cfg)
    registry = run_ingest(tmp_path / "ds", tmp_path / "out")
    assert registry["test_overlap_days"] == 15
    prices = pl.read_parquet(tmp_path / "out" / "prices.parquet")
    assert prices["date_id"].to_list() == list(range(205))
    assert pl.read_parquet(tmp_path / "out" / "test_days.parquet").height == 20


def test_revealed_labels_long_table(tiny_dataset, tmp_path, tiny_cfg):
    run_ingest(tiny_dataset, tmp_path / "out")
    revealed = pl.read_parquet(tmp_path / "out" / "revealed.parquet")
    assert (revealed["label_date_id"] + revealed["lag"] + 1 == revealed["date_id"]).all()
    assert set(revealed["lag"].unique()) == set(tiny_cfg.lags)
