"""Date splits with an embargo.

Split layout over the labelled days, oldest first:

    [ train ] embargo [ validation ] embargo [ holdout ]

The embargo (>= max lag + 1 days) keeps every label of one split from using prices that fall
inside the next.

The `split` stage computes them once (`make_splits`) and writes `splits.json`; every stage after
it reads that file (`load`), which also checks that it was made on the same date axis.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spreadcast.config import WindowsConfig
from spreadcast.errors import SplitError
from spreadcast.io import read_json, write_json

SPLITS_FILE = "splits.json"


@dataclass
class Splits:
    train: np.ndarray       # row indices into the dense date axis
    val: np.ndarray
    holdout: np.ndarray

    def to_dict(self, date_ids: np.ndarray) -> dict:
        def describe(rows):
            return {"rows": int(rows.size),
                    "date_ids": [int(date_ids[rows[0]]), int(date_ids[rows[-1]])] if rows.size else None}
        return {"train": describe(self.train), "val": describe(self.val), "holdout": describe(self.holdout)}

    def save(self, folder: str | Path, date_ids: np.ndarray, **settings) -> None:
        """`folder/splits.json`: the rows of each split, the date axis they index, the settings."""
        write_json(Path(folder) / SPLITS_FILE, {
            "axis": {"rows": int(len(date_ids)), "first": int(date_ids[0]), "last": int(date_ids[-1])},
            "settings": settings, "summary": self.to_dict(date_ids),
            "rows": {name: getattr(self, name).tolist() for name in ("train", "val", "holdout")}})


def load(folder: str | Path, date_ids: np.ndarray) -> Splits:
    """The splits the `split` stage wrote into `folder`, checked against the date axis `date_ids`."""
    path = Path(folder) / SPLITS_FILE
    saved = read_json(path)
    axis = {"rows": int(len(date_ids)), "first": int(date_ids[0]), "last": int(date_ids[-1])}
    if saved["axis"] != axis:
        raise SplitError(f"{path} was made on a date axis of {saved['axis']}, the data has {axis}; "
                         f"rerun the split stage (dvc repro split)")
    return Splits(**{name: np.asarray(saved["rows"][name], dtype=np.int64) for name in ("train", "val", "holdout")})


def make_splits(labelled: np.ndarray, cfg: WindowsConfig, max_lag: int) -> Splits:
    """Split the labelled rows (a boolean over the dense date axis) by date.

    A row is usable once it has a full history of `cfg.history` days behind it.
    """
    if cfg.embargo < max_lag + 1:
        raise SplitError(f"windows.embargo {cfg.embargo} is below max lag + 1 = {max_lag + 1}")
    rows = np.flatnonzero(labelled)
    rows = rows[rows >= cfg.history - 1]
    need = cfg.holdout_days + cfg.val_days + 2 * cfg.embargo + 20
    if rows.size < need:
        raise SplitError(f"only {rows.size} labelled days with a full history of {cfg.history}; "
                         f"windows.val_days + windows.holdout_days + 2 * embargo + 20 = {need} needed")
    holdout = rows[-cfg.holdout_days:]
    before = rows[rows < holdout[0] - cfg.embargo]
    val = before[-cfg.val_days:]
    train = before[before < val[0] - cfg.embargo]
    return Splits(train=train, val=val, holdout=holdout)
