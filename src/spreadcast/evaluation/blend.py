"""The served forecast: a bounded blend of the transformer, a ridge, a constant-rank prior and
each target's own-series forecast.

Four components, each standardised across all targets every day (zero mean, unit spread), so
their scales are comparable whatever the market:

- `transformer`: the lag heads' forecasts;
- `ridge`: a ridge on every model input (the last day of each window), fit on training rows
  for evaluation and refit on every published label for the submission and serving;
- `prior`: each target's mean daily rank over every label row already complete (all lags
  published): the row of date d enters on d + max_lag + 1. It keeps updating while serving;
- `own`: each target from its own series' features, one pooled fit per lag (`evaluation.own`),
  fit on training rows for evaluation and refit on every published label for serving.

The weights minimise the squared error of the daily centred ranks of the labels
(rank / (n - 1) - 0.5, all targets ranked together, as the metric ranks them) over
out-of-sample forecasts only, under 0 <= w <= `max_weight`: a weight cannot turn a component
against its own sign nor explode. One set of weights per lag, each fit on that lag's targets
alone, or (`blend.pool_lags`) one set fit on every target together and served for every lag.
The forecasts are those of every walk-forward fold of the training days (the ridge, own-series
fit and prior, each fit before its fold; the transformer where its configuration was trained
on the fold's fitting days, `train.evidence_folds`, and zero elsewhere) and of the validation
days (all four), so every weight rests on several periods of days its component never trained
on (`blend.fit_on: validation` uses the validation days alone). A lag whose fit keeps nothing
falls back to the prior alone, the ranking a user gets in a minute.

The whole blend falls back to the prior alone too (`blend.fallback`, `fallback`) where the
evidence backs the prior and not the rest: the prior's own Sharpe over the evidence's days is at
least `PRIOR_Z` / sqrt(days), and the blend, each part of the evidence (each fold, then the
validation days) forecast by weights fit on the other parts, does not beat it by more than
1 / sqrt(days). Weights fit on the same days they are scored on would always beat the prior;
fit on other days, they show what the other components add out of sample. Where the prior
itself scores within noise of nothing it is no fallback, and the blend stays.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from spreadcast.evaluation import metric

COMPONENTS = ("transformer", "ridge", "prior", "own")


def daily_ranks(labels: np.ndarray) -> np.ndarray:
    """Each row's ranks across targets in [0, 1] (NaN where missing; rows with < 2 labels NaN)."""
    out = np.full(labels.shape, np.nan)
    for i, row in enumerate(labels):
        have = np.isfinite(row)
        n = int(have.sum())
        if n > 1:
            out[i, have] = np.argsort(np.argsort(row[have], kind="stable"), kind="stable") / (n - 1)
    return out


def prior_series(labels: np.ndarray, delay: int) -> np.ndarray:
    """The prior at every row t: the mean daily rank of the label rows <= t - delay (0.5 where a
    target has none yet). `labels` lie on a dense date axis; `delay` = max lag + 1."""
    ranks = daily_ranks(labels)
    total = np.vstack([np.zeros((1, labels.shape[1])), np.nancumsum(ranks, axis=0)])
    count = np.vstack([np.zeros((1, labels.shape[1])), np.cumsum(np.isfinite(ranks), axis=0)])
    upto = np.clip(np.arange(labels.shape[0]) - delay + 1, 0, labels.shape[0])   # rows [0, t - delay]
    return np.where(count[upto] > 0, total[upto] / np.maximum(count[upto], 1), 0.5)


def standardise(values: np.ndarray) -> np.ndarray:
    """Each row centred and scaled across targets (the last axis); a constant row becomes zeros."""
    values = np.asarray(values, dtype=np.float64)
    centred = values - values.mean(axis=-1, keepdims=True)
    spread = centred.std(axis=-1, keepdims=True)
    return np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 1e-12)


def centred_ranks(labels: np.ndarray) -> np.ndarray:
    return daily_ranks(labels) - 0.5


def bounded_least_squares(x: np.ndarray, y: np.ndarray, upper: float) -> np.ndarray:
    """argmin |y - x w|^2 over 0 <= w <= upper, exactly, for a few columns (every face of the box)."""
    k = x.shape[1]
    gram, cross = x.T @ x, x.T @ y
    best, best_loss = np.zeros(k), 0.0                     # loss relative to w = 0
    for state in itertools.product((0, 1, 2), repeat=k):   # 0: at 0, 1: free, 2: at the bound
        w = np.where(np.array(state) == 2, upper, 0.0)
        free = np.flatnonzero(np.array(state) == 1)
        if free.size:
            rhs = cross[free] - gram[np.ix_(free, np.arange(k))] @ w
            try:
                w[free] = np.linalg.solve(gram[np.ix_(free, free)], rhs)
            except np.linalg.LinAlgError:
                continue
            if (w[free] < 0).any() or (w[free] > upper).any():
                continue
        loss = w @ gram @ w - 2 * cross @ w
        if loss < best_loss - 1e-15:
            best, best_loss = w, loss
    return best


@dataclass
class Blend:
    """Weights per lag over COMPONENTS, for targets in registry order."""

    weights: dict[int, list[float]]
    max_weight: float

    def combine(self, components: dict[str, np.ndarray], target_lags: np.ndarray) -> np.ndarray:
        """The blended forecast (rows x targets) from raw components (rows x targets)."""
        stacked = np.stack([np.asarray(components[name], dtype=np.float64) for name in COMPONENTS])
        return np.einsum("ct,cbt->bt", self.per_target(target_lags), standardise(stacked))

    def per_target(self, target_lags: np.ndarray) -> np.ndarray:
        """Each component's weight for each target (components x targets; 0 for a lag not fit)."""
        out = np.zeros((len(COMPONENTS), len(target_lags)))
        for lag, w in self.weights.items():
            out[:, target_lags == lag] = np.asarray(w)[:, None]
        return out

    def to_dict(self) -> dict:
        return {"components": list(COMPONENTS), "max_weight": self.max_weight,
                "weights": {str(k): v for k, v in self.weights.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "Blend":
        if list(d["components"]) != list(COMPONENTS):
            raise ValueError(f"blend components {d['components']} differ from {list(COMPONENTS)}")
        return cls(weights={int(k): [float(x) for x in v] for k, v in d["weights"].items()},
                   max_weight=float(d["max_weight"]))


def fit(components: dict[str, np.ndarray], labels: np.ndarray, target_lags: np.ndarray,
        max_weight: float, pool_lags: bool = False) -> Blend:
    """Weights per lag fit on `labels` (rows x targets) of days no component trained on: each
    lag's on its own targets, or with `pool_lags` one fit on every target, the same for each lag."""
    y = centred_ranks(labels)
    scaled = {name: standardise(components[name]) for name in COMPONENTS}
    lags = sorted({int(k) for k in target_lags})
    groups = ([(lags, np.ones(len(target_lags), dtype=bool))] if pool_lags
              else [([lag], target_lags == lag) for lag in lags])
    weights = {}
    for served, columns in groups:
        cols = np.flatnonzero(columns)
        target = y[:, cols].ravel()
        x = np.stack([scaled[name][:, cols].ravel() for name in COMPONENTS], axis=1)
        keep = np.isfinite(target)
        w = bounded_least_squares(x[keep], target[keep], max_weight) if keep.sum() > len(COMPONENTS) else np.zeros(len(COMPONENTS))
        if not w.any():
            w[COMPONENTS.index("prior")] = 1e-3 * max_weight      # nothing validated: the prior alone
        weights.update({lag: [float(v) for v in w] for lag in served})
    return Blend(weights=weights, max_weight=max_weight)


PRIOR_Z = 2.0   # the prior is a fallback only where its Sharpe over the evidence is this many standard errors


def prior_alone(lags, max_weight: float) -> Blend:
    """The blend that serves the prior alone, the same weight for every lag (one ranking)."""
    return Blend(weights={int(lag): [max_weight if name == "prior" else 0.0 for name in COMPONENTS]
                          for lag in sorted({int(k) for k in lags})}, max_weight=max_weight)


def fallback(parts: list[tuple[dict[str, np.ndarray], np.ndarray]], target_lags: np.ndarray, max_weight: float,
             pool_lags: bool = False) -> dict:
    """Whether the evidence `parts` ((components, labels) of each fold, then of the validation
    days) backs the prior alone over the blend (see the module): each part forecast by the weights
    `fit` on the others, its daily Spearman correlations beside the prior's over the same days.
    Returns {"prior_alone", "blend_sharpe", "prior_sharpe", "days", "margin", "prior_floor"}."""
    blended, alone = [], []
    for k, (components, labels) in enumerate(parts):
        rest = [p for j, p in enumerate(parts) if j != k]
        fitted = fit({n: np.vstack([c[n] for c, _ in rest]) for n in COMPONENTS}, np.vstack([y for _, y in rest]),
                     target_lags, max_weight, pool_lags)
        blended.append(metric.daily_rank_corr(labels, fitted.combine(components, target_lags), strict=False))
        alone.append(metric.daily_rank_corr(labels, components["prior"], strict=False))
    blended, alone = np.concatenate(blended), np.concatenate(alone)
    ok = np.isfinite(blended) & np.isfinite(alone)
    days = int(ok.sum())
    if days < 2 or blended[ok].std() == 0 or alone[ok].std() == 0:
        return {"prior_alone": False, "blend_sharpe": None, "prior_sharpe": None, "days": days,
                "margin": None, "prior_floor": None}
    b, a = metric.sharpe(blended[ok]), metric.sharpe(alone[ok])
    margin, floor = 1.0 / np.sqrt(days), PRIOR_Z / np.sqrt(days)
    return {"prior_alone": bool(a >= floor and b <= a + margin), "blend_sharpe": round(b, 4),
            "prior_sharpe": round(a, 4), "days": days, "margin": round(margin, 4), "prior_floor": round(floor, 4)}


def with_revealed(date_ids: np.ndarray, labels: np.ndarray, revealed, target_names: list[str]) -> np.ndarray:
    """`labels` (dates x targets, as published by the last training day) with the values of the
    lagged test label files (the long `revealed` table) filled in at their label dates, each one
    that is public on the day it came with. Used for the prior of the submitted days; a label
    row enters the prior only `delay` days after its date, when every lag of it is published."""
    from spreadcast.data.layout import LABEL_DATE
    from spreadcast.features.engineer import fill_published

    out = np.array(labels, dtype=np.float64, copy=True)
    fill_published(out, date_ids, revealed, target_names, at=LABEL_DATE)
    return out
