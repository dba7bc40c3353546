"""The competition metric: Sharpe ratio of daily Spearman rank correlations.

For each date, take the targets that have a label, rank the labels and the matching
predictions (average ranks for ties) and correlate the ranks (Pearson). The score is the mean
of the daily correlations divided by their standard deviation (ddof=0). A date whose labels or
predictions have zero spread is an error, as it is in the competition.

`score_reference` follows that definition date by date; `daily_rank_corr` and `score` are the
vectorised versions used during training and evaluation, and agree with it to 1e-9.
"""
from __future__ import annotations

import warnings

import numpy as np

from spreadcast.errors import MetricError


def rankdata(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) along `axis`; NaN stays NaN."""
    x = np.moveaxis(np.asarray(values, dtype=np.float64), axis, -1)
    n = x.shape[-1]
    order = np.argsort(x, axis=-1, kind="stable")           # NaN sorts last
    xs = np.take_along_axis(x, order, axis=-1)
    pos = np.broadcast_to(np.arange(n), x.shape)
    starts = np.ones(x.shape, dtype=bool)
    starts[..., 1:] = xs[..., 1:] != xs[..., :-1]           # NaN != NaN: each NaN its own group
    ends = np.ones(x.shape, dtype=bool)
    ends[..., :-1] = starts[..., 1:]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, pos, n - 1), -1), axis=-1), -1)
    ranks = np.empty(x.shape)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=-1)
    ranks[np.isnan(x)] = np.nan
    return np.moveaxis(ranks, -1, axis)


def _rank_average(values: np.ndarray) -> np.ndarray:
    # the reference ranks with SciPy, independently of the vectorised `rankdata` above
    from scipy.stats import rankdata as scipy_rankdata

    return scipy_rankdata(values, method="average")


def score_reference(labels: np.ndarray, preds: np.ndarray) -> float:
    """Date-by-date reference implementation (dates x targets; NaN label = no label)."""
    daily = []
    for d in range(labels.shape[0]):
        have = ~np.isnan(labels[d])
        if not have.any():
            raise MetricError(f"date row {d}: no non-null target values")
        y, p = labels[d, have], preds[d, have]
        if not np.all(np.isfinite(p)):
            raise MetricError(f"date row {d}: non-finite prediction for a labelled target")
        if y.std() == 0 or p.std() == 0:
            raise MetricError(f"date row {d}: zero spread, rank correlation undefined")
        daily.append(np.corrcoef(_rank_average(p), _rank_average(y))[0, 1])
    return sharpe(np.asarray(daily))


def sharpe(daily: np.ndarray) -> float:
    std = daily.std()
    if std == 0:
        raise MetricError("zero standard deviation of daily correlations, Sharpe undefined")
    return float(daily.mean() / std)


def daily_rank_corr(labels: np.ndarray, preds: np.ndarray, strict: bool = True) -> np.ndarray:
    """Spearman correlation per date over the labelled targets, vectorised.

    With `strict`, a date without labels or with zero spread raises `MetricError` as the
    competition does; otherwise such a date gives NaN (useful while a model is training).
    """
    labels = np.asarray(labels, dtype=np.float64)
    preds = np.asarray(preds, dtype=np.float64)
    have = ~np.isnan(labels)
    if strict:
        if not have.any(axis=1).all():
            raise MetricError(f"date row {int(np.argmin(have.any(axis=1)))}: no non-null target values")
        if not np.isfinite(preds[have]).all():
            raise MetricError("non-finite prediction for a labelled target")
    p = np.where(have, preds, np.nan)
    ry = rankdata(labels, axis=1)
    rp = rankdata(p, axis=1)
    n = have.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # dates without labels: NaN, handled below
        ry = ry - np.nanmean(ry, axis=1, keepdims=True)
        rp = rp - np.nanmean(rp, axis=1, keepdims=True)
        cov = np.nansum(ry * rp, axis=1)
        var_y = np.nansum(ry * ry, axis=1)
        var_p = np.nansum(rp * rp, axis=1)
        corr = cov / np.sqrt(var_y * var_p)
    degenerate = (var_y <= 0) | (var_p <= 0) | (n == 0)
    if strict and degenerate.any():
        raise MetricError(f"date row {int(np.argmax(degenerate))}: zero spread, rank correlation undefined")
    return np.where(degenerate, np.nan, corr)


def score(labels: np.ndarray, preds: np.ndarray) -> float:
    """The competition score, vectorised (raises where the competition would)."""
    return sharpe(daily_rank_corr(labels, preds, strict=True))


def summary(labels: np.ndarray, preds: np.ndarray) -> dict:
    """Score plus mean/std of the daily correlations, skipping undefined dates."""
    daily = daily_rank_corr(labels, preds, strict=False)
    ok = daily[np.isfinite(daily)]
    if ok.size == 0:
        return {"sharpe": float("nan"), "ic_mean": float("nan"), "ic_std": float("nan"), "days": 0}
    std = ok.std()
    return {"sharpe": float(ok.mean() / std) if std > 0 else float("nan"),
            "ic_mean": float(ok.mean()), "ic_std": float(std), "days": int(ok.size)}
