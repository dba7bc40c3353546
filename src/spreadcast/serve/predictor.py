"""Inference with the trained lag heads: the path shared by evaluation, submission and serving.

The metric ranks the targets of all lags together each day, and longer lags move more. Each
head predicts its targets in units of the target's training-fold RMS (the standardised scale),
and the heads are combined on that scale: every target's forecast is comparable whatever its
lag. On the synthetic market this ranks better than forecasts on the labels' own scale, even
for the oracle's exact expectations (tests/test_metric.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spreadcast.features.windows import Tensors
from spreadcast.model import checkpoint
from spreadcast.model.net import SpreadTransformer
from spreadcast.training.loop import head_data, predict


@dataclass
class Head:
    lag: int
    model: SpreadTransformer
    features: list[str]
    targets: list[str]


def load_head(folder: str | Path, lag: int) -> Head:
    """The model saved as `folder/model`, in evaluation mode."""
    state, meta = checkpoint.load(Path(folder) / "model")
    model = checkpoint.build_model(meta)
    model.load_state_dict(state["model"])
    model.eval()
    return Head(lag=lag, model=model, features=meta["features"], targets=meta["targets"])


def load_heads(folder: str | Path, lags: list[int]) -> list[Head]:
    """Load the final model of every lag from `folder/lag{k}/model`."""
    return [load_head(Path(folder) / f"lag{lag}", lag) for lag in lags]


def served_folder(artifacts: str | Path, lag: int) -> Path:
    """The folder of the model a lag is served with: the one refit on every labelled day
    (`submission/models`, written by `submit.refit`) when there is one, the fine-tuned one
    otherwise. The submission, the bundle and `predict()` all serve this model."""
    refit = Path(artifacts) / "submission" / "models" / f"lag{lag}"
    return refit if (refit / "model.pt").is_file() else Path(artifacts) / "finetune" / f"lag{lag}"


@torch.no_grad()
def predict_rows(heads: list[Head], tensors: Tensors, rows: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Predictions (rows x all targets, registry order) on the standardised scale."""
    out = np.full((len(rows), len(tensors.target_names)), np.nan)
    for head in heads:
        cols = tensors.head(head.lag)
        expected = [tensors.target_names[j] for j in cols]
        if head.targets != expected:
            raise checkpoint.CheckpointError(
                f"lag {head.lag} model targets differ from the exported tensors' lag-{head.lag} targets")
        data = head_data(tensors, head.lag, head.features)
        forecast = predict(head.model, data.windows, rows, batch_size)
        out[:, cols] = forecast
    return out
