"""The blend's own-series component: every target forecast from its own series alone.

A spread that reverts to its recent average, or keeps its trend, is forecast by its own changes,
z-score and deviations and by the target's own last revealed label (`engineer.own_features`,
one input per slot). A shared set of a few hundred screened inputs reaches few of the targets'
own series; this component reaches all of them with a handful of coefficients: one linear fit
per lag, pooled over the lag's targets (the same rule for every pair), on the daily centred
ranks of the labels, as the blend fits its weights. Its penalty is chosen on the walk-forward
folds of the training days.

Centred (`blend.centre`), each target's forecast is taken less its mean over the fitting rows
(`offset`), so it ranks the targets by where their own series stand against their usual, and
each target's constant ranking is left to the blend's prior.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spreadcast.evaluation import metric
from spreadcast.evaluation.blend import centred_ranks
from spreadcast.evaluation.walkforward import fold_weights, folds, weighted_mean


def columns(own: list[list[str | None]], feature_names: list[str]) -> np.ndarray:
    """Each target's own features as column indices of the scaled inputs (targets x slots;
    -1 where a slot has none)."""
    index = {f: i for i, f in enumerate(feature_names)}
    missing = [n for slots in own for n in slots if n is not None and n not in index]
    if missing:
        raise KeyError(f"own feature {missing[0]!r} is not among the scaled inputs")
    return np.array([[index[n] if n is not None else -1 for n in slots] for slots in own], dtype=np.int64)


def inputs(x: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The own inputs (rows x targets x slots) of scaled input rows x (rows x features); 0 (the
    training mean) where a slot has no feature."""
    out = np.asarray(x, dtype=np.float64)[:, np.maximum(cols, 0)]
    out[:, cols < 0] = 0.0
    return out


def tensor_inputs(tensors) -> np.ndarray:
    """The own inputs (dates x targets x slots) of the exported tensors (`features.windows.Tensors`)."""
    return inputs(tensors.features.numpy(), columns(tensors.own, tensors.feature_names))


def fit(z: np.ndarray, labels: np.ndarray, target_lags: np.ndarray, alpha: float) -> np.ndarray:
    """Coefficients (targets x slots, equal within a lag) of the ridge of the labels' daily
    centred ranks on the own inputs z (rows x targets x slots), pooled over each lag's targets.
    The penalty is alpha on the mean Gram matrix (inputs are standardised)."""
    coef = np.zeros((z.shape[1], z.shape[2]))
    if not z.shape[2]:
        return coef
    y = centred_ranks(labels)
    for lag in np.unique(target_lags):
        cols = np.flatnonzero(target_lags == lag)
        x, t = z[:, cols].reshape(-1, z.shape[2]), y[:, cols].ravel()
        keep = np.isfinite(t)
        if keep.sum() <= z.shape[2]:
            continue
        x, t = x[keep], t[keep]
        gram = x.T @ x / len(t) + alpha * np.eye(z.shape[2])
        coef[cols] = np.linalg.solve(gram, x.T @ t / len(t))
    return coef


def predict(z: np.ndarray, coef: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
    """Forecasts (rows x targets) from own inputs z (rows x targets x slots), less `offset`
    (targets,) where given."""
    out = np.einsum("bts,ts->bt", z, coef)
    return out if offset is None else out - offset


def offset(z: np.ndarray, coef: np.ndarray, centre: bool = True) -> np.ndarray:
    """Each target's mean forecast over the fitting rows z (targets,): what a centred fit
    subtracts (zeros where not `centre`)."""
    return predict(z, coef).mean(axis=0) if centre and len(z) else np.zeros(z.shape[1])


@dataclass
class OwnChoice:
    alpha: float
    scores: list[dict]       # every candidate: alpha, per-fold Sharpe, mean

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "candidates": self.scores}


def select(z: np.ndarray, labels: np.ndarray, target_lags: np.ndarray, rows: np.ndarray, alphas: list[float],
           n_folds: int, embargo: int, centre: bool = False, weigh: str = "equal") -> OwnChoice:
    """The penalty with the best mean walk-forward Sharpe over `rows` (a tie: the larger), each
    fold's forecast centred on its fitting rows where `centre`, the folds weighed by `weigh`
    (`walkforward.fold_weights`)."""
    table = {a: [] for a in alphas}
    splits = folds(rows, n_folds, embargo)
    weights = fold_weights(splits, weigh)
    for fit_rows, test_rows in splits:
        for a in alphas:
            coef = fit(z[fit_rows], labels[fit_rows], target_lags, a)
            forecast = predict(z[test_rows], coef, offset(z[fit_rows], coef, centre))
            table[a].append(metric.summary(labels[test_rows], forecast)["sharpe"])
    scores = [{"alpha": a, "fold_sharpe": [round(float(s), 4) for s in v], "mean_sharpe": round(weighted_mean(v, weights), 4)}
              for a, v in table.items()]
    best = max(scores, key=lambda e: (e["mean_sharpe"] if np.isfinite(e["mean_sharpe"]) else -np.inf, e["alpha"]))
    return OwnChoice(alpha=float(best["alpha"]), scores=scores)
