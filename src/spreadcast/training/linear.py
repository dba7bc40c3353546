"""Closed-form start for the model's linear path, and the saliency of each input through it.

The linear path maps K decayed averages of the gated features straight to the outputs. Its
least-squares optimum on the training rows is a ridge regression. Fine-tuning on a few pruned
inputs (and, optionally, training) starts from that fit instead of walking towards it at the
network's small learning rate; the encoder then learns what the linear path misses. Only
training rows are used. The ridge intercept is left out: labels and features are standardised
on the training fold, so it is close to zero, and the head's bias carries any offset.
"""
from __future__ import annotations

import numpy as np
import torch

from spreadcast.evaluation import metric
from spreadcast.evaluation.baseline import fit_ridge, predict_ridge
from spreadcast.model.net import SpreadTransformer


@torch.no_grad()
def pooled(model: SpreadTransformer, windows, rows: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The linear path's inputs (rows x K*F): decayed averages of the gated features."""
    model.eval()
    device = model.skip.weight.device
    parts = [model.pool(model.gate(windows.batch(rows[i:i + batch_size])[0].to(device))).float().cpu()
             for i in range(0, len(rows), batch_size)]
    return torch.cat(parts).numpy().astype(np.float64)


@torch.no_grad()
def ridge_start(model: SpreadTransformer, windows, rows: np.ndarray, alpha: float) -> None:
    """Set the linear path (forecast and score halves alike) to the ridge fit on `rows`."""
    x = pooled(model, windows, rows)
    y = windows.labels[torch.as_tensor(rows)].double().numpy()
    weights, _ = fit_ridge(x, y, alpha)                                   # (K*F, T)
    w = torch.as_tensor(weights.T, dtype=model.skip.weight.dtype, device=model.skip.weight.device)
    model.skip.weight.copy_(torch.cat([w, w]))


@torch.no_grad()
def saliency(model: SpreadTransformer) -> torch.Tensor:
    """Per feature: its gate times the L2 norm of the forecast weights it feeds in the linear
    path (over all decayed averages and targets). A gate alone says how open a feature is; the
    weights behind it say how much the forecasts move with it."""
    n_features = model.cfg.n_features
    w = model.skip.weight[: model.cfg.n_targets].float()                 # (T, K*F)
    return model.gate.values().float() * w.reshape(w.shape[0], -1, n_features).pow(2).sum((0, 1)).sqrt()


def validation_scorer(model: SpreadTransformer, data, alpha: float):
    """A function of feature indices -> validation Sharpe of the linear path restricted to
    those features and re-solved by ridge on the training rows (the model's own decays and
    gates; the pooled inputs are computed once)."""
    n_features = model.cfg.n_features
    x_train = pooled(model, data.windows, data.train_rows)
    x_val = pooled(model, data.windows, data.val_rows)
    y_train = data.windows.labels[torch.as_tensor(data.train_rows)].double().numpy()
    labels = data.raw_labels[data.val_rows]

    def score(features: list[int]) -> float:
        columns = [b * n_features + j for b in range(len(model.cfg.skip_decays)) for j in features]
        weights, intercept = fit_ridge(x_train[:, columns], y_train, alpha)
        return metric.summary(labels, predict_ridge(weights, intercept, x_val[:, columns]))["sharpe"]
    return score
