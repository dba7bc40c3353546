"""Loss terms and their balance.

- Huber on standardised targets (labelled cells only), or a Huber/MSE hybrid.
- Pairwise logistic rank loss over the labelled targets of each date, weighted by |y_i - y_j|.
- L1 on the feature gate, its weight ramped from zero over the first epochs.

The terms live on different scales, so each is divided by its magnitude at the start of
training (measured once on the first batches); each term's share of the total is logged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def huber(forecast: torch.Tensor, y: torch.Tensor, have: torch.Tensor, delta: float) -> torch.Tensor:
    loss = F.huber_loss(forecast, torch.where(have, y, forecast.detach()), reduction="none", delta=delta)
    return (loss * have).sum() / have.sum().clamp(min=1)


def mse(forecast: torch.Tensor, y: torch.Tensor, have: torch.Tensor) -> torch.Tensor:
    err = torch.where(have, forecast - y, torch.zeros_like(forecast))
    return (err**2).sum() / have.sum().clamp(min=1)


def pairwise_rank(score: torch.Tensor, y: torch.Tensor, have: torch.Tensor) -> torch.Tensor:
    """Mean over ordered pairs (y_i > y_j) of |y_i - y_j| * softplus(-(s_i - s_j))."""
    y0 = torch.where(have, y, torch.zeros_like(y))
    dy = y0[:, :, None] - y0[:, None, :]                         # (B, T, T)
    ds = score[:, :, None] - score[:, None, :]
    valid = (have[:, :, None] & have[:, None, :] & (dy > 0)).float()
    weight = dy.abs() * valid
    return (weight * F.softplus(-ds)).sum() / weight.sum().clamp(min=1e-8)


def gate_l1(gates: torch.Tensor) -> torch.Tensor:
    return gates.abs().mean()


def gate_weight(base: float, epoch: int, warmup_epochs: int) -> float:
    """Warm start: zero in the first epoch, ramping linearly to `base` over `warmup_epochs`."""
    if warmup_epochs <= 0:
        return base
    return base * min(1.0, epoch / warmup_epochs)
