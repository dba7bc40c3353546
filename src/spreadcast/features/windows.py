"""The exported tensors and zero-copy rolling windows over the feature matrix.

Windows of length L are views made with `Tensor.unfold`; a batch gathers only its own rows,
so the training path never materialises a dates x L x features array.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spreadcast.features.splits import Splits
from spreadcast.io import load_array, read_json, save_arrays


class Windows:
    """Rolling windows over a (dates x features) matrix as views.

    `batch(rows)` returns x (B, L, F), missing mask (B, L, F) and y (B, T) for windows ending
    at `rows`; only the batch is copied.
    """

    def __init__(self, features: torch.Tensor, missing: torch.Tensor, labels: torch.Tensor, history: int):
        self.history = history
        self._features, self._missing = features, missing
        # unfold over dates: (dates - L + 1, F, L), a view sharing storage with `features`
        self._x = features.unfold(0, history, 1)
        self._m = missing.unfold(0, history, 1)
        self.labels = labels

    @property
    def device(self) -> torch.device:
        return self._features.device

    def nbytes(self) -> int:
        """Bytes of the matrices the windows view (what moving them to a device costs)."""
        return sum(t.numel() * t.element_size() for t in (self._features, self._missing, self.labels))

    def to(self, device: torch.device | str) -> "Windows":
        """The same windows over copies of the matrices on `device`; batches are then gathered
        there, with no copy per step."""
        return Windows(self._features.to(device), self._missing.to(device), self.labels.to(device), self.history)

    def batch(self, rows: np.ndarray | torch.Tensor):
        rows = torch.as_tensor(rows, device=self.device)
        start = rows - (self.history - 1)
        x = self._x[start].transpose(1, 2)        # (B, L, F)
        m = self._m[start].transpose(1, 2)        # (B, L, F)
        return x, m, self.labels[rows]


@dataclass
class HeadData:
    windows: Windows
    train_rows: np.ndarray
    val_rows: np.ndarray
    target_scale: torch.Tensor      # (T,) raw label = standardised label * scale
    raw_labels: np.ndarray          # (dates x T) raw labels, NaN = missing


@dataclass
class Tensors:
    """The exported tensors of the `windows` stage, as loaded for training and inference."""

    features: torch.Tensor      # (dates, F) float32 scaled, missing cells 0: model inputs and own features
    missing: torch.Tensor       # (dates, F) float32, 1 where the feature is missing
    labels: torch.Tensor        # (dates, T) float32 standardised labels, NaN = no label
    raw_labels: np.ndarray      # (dates, T) float64 labels as published
    date_ids: np.ndarray        # (dates,)
    splits: Splits
    feature_names: list[str]
    target_names: list[str]
    target_lags: np.ndarray     # (T,)
    target_scale: np.ndarray    # (T,)
    history: int
    model_inputs: list[str]     # the features the transformer and the ridge read
    own: list[list[str | None]]  # each target's own features, one name or None per slot (empty: none)
    fold_inputs: list[list[str]] = field(default_factory=list)   # the screen's inputs on each walk-forward fold
    level_inputs: list[str] = field(default_factory=list)        # every usable level feature, screened or not

    @property
    def model_columns(self) -> np.ndarray:
        """Column indices of `model_inputs` in `features`."""
        return self.columns_of(self.model_inputs)

    def fold_columns(self, n_folds: int) -> list[np.ndarray]:
        """Column indices of each walk-forward fold's screened inputs (`prescreen` repeats the
        screen on each fold's fitting days)."""
        if len(self.fold_inputs) != n_folds:
            raise ValueError(f"the tensors carry the screen of {len(self.fold_inputs)} walk-forward folds, "
                             f"not {n_folds} (walkforward.folds): rerun the prescreen stage")
        return [self.columns_of(names) for names in self.fold_inputs]

    def columns_of(self, names: list[str]) -> np.ndarray:
        index = {f: i for i, f in enumerate(self.feature_names)}
        missing = [f for f in names if f not in index]
        if missing:
            raise KeyError(f"feature {missing[0]!r} is not among the exported tensors' features")
        return np.array([index[f] for f in names], dtype=np.int64)

    def head(self, lag: int) -> np.ndarray:
        """Column indices of the targets of one lag."""
        return np.flatnonzero(self.target_lags == lag)

    def windows(self, columns: np.ndarray, feature_idx: np.ndarray | None = None) -> Windows:
        x, m = self.features, self.missing
        if feature_idx is not None:
            x, m = x[:, feature_idx], m[:, feature_idx]
        return Windows(x, m, self.labels[:, columns], self.history)

    def rows_of(self, date_ids: np.ndarray) -> np.ndarray:
        index = {int(d): i for i, d in enumerate(self.date_ids)}
        return np.array([index[int(d)] for d in date_ids], dtype=np.int64)


def export(folder, *, features: np.ndarray, missing: np.ndarray, labels: np.ndarray, raw_labels: np.ndarray,
           date_ids: np.ndarray, splits: Splits) -> None:
    """Write the tensors as .npy files (no pickle) into `folder`.

    `features` are scaled float32 with missing cells at 0, `missing` the uint8 mask of them.
    """
    save_arrays(folder,
                features=features.astype(np.float32, copy=False),
                missing=missing.astype(np.uint8, copy=False),
                labels=labels.astype(np.float32),
                raw_labels=raw_labels.astype(np.float64, copy=False),
                date_ids=date_ids.astype(np.int64),
                train_rows=splits.train, val_rows=splits.val, holdout_rows=splits.holdout)


def load(folder) -> Tensors:
    folder = Path(folder)
    meta = read_json(folder / "meta.json")
    arr = {name: load_array(folder / f"{name}.npy") for name in
           ("features", "missing", "labels", "raw_labels", "date_ids", "train_rows", "val_rows", "holdout_rows")}
    return Tensors(
        features=torch.from_numpy(arr["features"]),
        missing=torch.from_numpy(arr["missing"]).float(),
        labels=torch.from_numpy(arr["labels"]),
        raw_labels=arr["raw_labels"],
        date_ids=arr["date_ids"],
        splits=Splits(arr["train_rows"], arr["val_rows"], arr["holdout_rows"]),
        feature_names=meta["features"],
        target_names=[t["name"] for t in meta["targets"]],
        target_lags=np.array([t["lag"] for t in meta["targets"]]),
        target_scale=np.asarray(meta["target_scale"]),
        history=int(meta["history"]),
        model_inputs=meta["model_inputs"],
        own=meta["own"]["features"] or [[] for _ in meta["targets"]],
        fold_inputs=meta.get("fold_inputs", []),
        level_inputs=meta.get("level_inputs", []),
    )


def head_data(tensors, lag: int, feature_names: list[str] | None = None) -> HeadData:
    """The training data of one lag head, optionally restricted to some features (by name)."""
    cols = tensors.head(lag)
    feature_idx = None
    if feature_names is not None:
        index = {f: i for i, f in enumerate(tensors.feature_names)}
        missing = [f for f in feature_names if f not in index]
        if missing:
            raise KeyError(f"feature {missing[0]!r} is not in the exported tensors")
        feature_idx = torch.tensor([index[f] for f in feature_names])
    return HeadData(windows=tensors.windows(cols, feature_idx),
                    train_rows=tensors.splits.train, val_rows=tensors.splits.val,
                    target_scale=torch.as_tensor(tensors.target_scale[cols], dtype=torch.float32),
                    raw_labels=tensors.raw_labels[:, cols])
