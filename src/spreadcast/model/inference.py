"""A model's forecasts over rolling windows: used by validation during training and by every
forecast the pipeline serves (`serve.predictor`)."""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from spreadcast.features.windows import Windows
from spreadcast.model.net import SpreadTransformer


@torch.no_grad()
def predict(model: SpreadTransformer, windows: Windows, rows: np.ndarray, batch_size: int,
            autocast=contextlib.nullcontext) -> np.ndarray:
    """Standardised forecasts (rows x T)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(rows), batch_size):
        x, m, _ = windows.batch(rows[start:start + batch_size])
        with autocast():
            forecast, _ = model(x.to(device), m.to(device))
        out.append(forecast.float().cpu())
    return torch.cat(out).numpy() if out else np.empty((0, model.cfg.n_targets))
