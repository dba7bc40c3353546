"""Ridge regression on the same scaled features (the last day of each window), all targets at once.

Missing labels count as zero (the standardised mean) in the fit; it is a baseline, kept simple
and closed-form so every evaluation can show model vs baseline on the same days.
"""
from __future__ import annotations

import numpy as np


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights (F x T) and intercept (T,) of ridge on rows x features -> rows x targets."""
    x_mean = x.mean(axis=0)
    y0 = np.nan_to_num(y, nan=0.0)
    y_mean = y0.mean(axis=0)
    xc = x - x_mean
    gram = xc.T @ xc + alpha * len(x) * np.eye(x.shape[1])
    weights = np.linalg.solve(gram, xc.T @ (y0 - y_mean))
    return weights, y_mean - x_mean @ weights


def predict_ridge(weights: np.ndarray, intercept: np.ndarray, x: np.ndarray) -> np.ndarray:
    return x @ weights + intercept


def const_rank(labels: np.ndarray) -> np.ndarray:
    """Each target's mean daily rank over `labels` (days x targets), in [0, 1], as a constant
    forecast: the ranking a user gets in a minute from the training labels. A target never
    labelled sits in the middle (0.5)."""
    ranks = np.full(labels.shape, np.nan)
    for i, row in enumerate(labels):
        have = np.isfinite(row)
        n = int(have.sum())
        if n > 1:
            order = np.argsort(np.argsort(row[have], kind="stable"), kind="stable")
            ranks[i, have] = order / (n - 1)
    counted = np.isfinite(ranks).sum(axis=0)
    total = np.nansum(ranks, axis=0)
    return np.where(counted > 0, total / np.maximum(counted, 1), 0.5)
