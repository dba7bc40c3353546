"""Feature prescreening on the training fold only.

Drops columns missing beyond a threshold, constant or near-constant columns, and
near-duplicates (|Spearman| above a bound with a better-scoring kept column); ranks the rest by
their rank IC with the targets (root mean square over targets, and over `ic_blocks` consecutive
blocks of the days, each with its own IC: a relation that turned sign halfway cancels in one IC
over all days, not in the blocks'), optionally grouped by source column, and keeps by threshold
and top-k. `rank_by: random` keeps as many in a seeded, label-blind order instead: the control
that shows what the IC ranking is worth. Every column gets a line in the report: kept with its
score, or dropped with a reason.
"""
from __future__ import annotations

import warnings

import numpy as np

from spreadcast.config import PrescreenConfig
from spreadcast.evaluation.metric import rankdata


def _centred_ranks(values: np.ndarray) -> np.ndarray:
    """Column-wise ranks centred on zero and scaled to unit norm; missing cells count as 0."""
    ranks = rankdata(values, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # an all-missing column: zeros below
        ranks = ranks - np.nanmean(ranks, axis=0, keepdims=True)
    ranks = np.nan_to_num(ranks, nan=0.0)
    norm = np.linalg.norm(ranks, axis=0, keepdims=True)
    return ranks / np.where(norm > 0, norm, 1.0)


def rank_ic(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Spearman IC of each feature with each target over the rows given (features x targets)."""
    return _centred_ranks(features).T @ _centred_ranks(labels)


def _label_blind(keys: list[str]) -> np.ndarray:
    """A rank score per column that ignores the labels: each distinct key (a source column, or a
    feature) at a seeded random place, the same for every fold and market with those names."""
    distinct = sorted(set(keys))
    place = dict(zip(distinct, np.random.default_rng(0).permutation(len(distinct)) / max(len(distinct), 1)))
    return np.array([place[k] for k in keys])


def _unusable(features: np.ndarray, cfg: PrescreenConfig) -> tuple[list[str | None], np.ndarray]:
    """Why each column cannot be an input whatever the labels say (None: it can): missing on more
    than `max_missing` of the rows, or constant. Also each column's share of missing rows."""
    missing = np.isnan(features).mean(axis=0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # an all-missing column: constant
        std = np.nanstd(features, axis=0)
    reason: list[str | None] = [None] * features.shape[1]
    for j in range(features.shape[1]):
        if missing[j] > cfg.max_missing:
            reason[j] = f"missing {missing[j]:.2f} > {cfg.max_missing}"
        elif not np.isfinite(std[j]) or std[j] <= cfg.min_std:
            reason[j] = f"constant (std {0.0 if not np.isfinite(std[j]) else std[j]:.3g})"
    return reason, missing


def usable(features: np.ndarray, names: list[str], cfg: PrescreenConfig) -> list[str]:
    """The names of the columns of `features` (rows x F) that pass the screen's label-blind
    checks (missing share, constancy), in their order: no label is read."""
    reason, _ = _unusable(features, cfg)
    return [name for name, r in zip(names, reason) if r is None]


def prescreen(features: np.ndarray, names: list[str], labels: np.ndarray, cfg: PrescreenConfig):
    """Screen `features` (training rows x F) against `labels` (training rows x T).

    Returns the kept names in a stable order (best score first, ties by name) and the report.
    """
    n = features.shape[1]
    reason, missing = _unusable(features, cfg)
    alive = np.array([r is None for r in reason])
    score = np.zeros(n)
    if alive.any():
        # consecutive blocks as views of the rows: one block (the default) copies nothing more
        blocks = zip(np.array_split(features, cfg.ic_blocks), np.array_split(labels, cfg.ic_blocks))
        square = [np.mean(rank_ic(f[:, alive], y) ** 2, axis=1) for f, y in blocks]
        score[alive] = np.sqrt(np.mean(square, axis=0))
    # With group_by_column, a source column's features are ranked together by the best of them,
    # so a sequence model keeps the short-horizon series of every column it finds informative.
    family = [name.split("__")[0] for name in names]
    best = {}
    for j in np.flatnonzero(alive):
        best[family[j]] = max(best.get(family[j], 0.0), score[j])
    rank_score = np.array([best.get(family[j], 0.0) for j in range(n)]) if cfg.group_by_column else score
    if cfg.rank_by == "ic":
        order_score, within = rank_score, score
    else:                     # neither the order of columns nor that of a column's features reads a label
        order_score, within = _label_blind(family if cfg.group_by_column else names), np.zeros(n)
    order = sorted(np.flatnonzero(alive),
                   key=lambda j: (-round(order_score[j], 12), family[j], -round(within[j], 12), names[j]))
    kept: list[int] = []
    ranks = _centred_ranks(features[:, order]) if order else None
    kept_pos: list[int] = []
    for pos, j in enumerate(order):
        if rank_score[j] < cfg.min_abs_ic:
            reason[j] = f"score {rank_score[j]:.4f} < min_abs_ic {cfg.min_abs_ic}"
            continue
        if len(kept) >= cfg.top_k:
            reason[j] = f"beyond top_k {cfg.top_k}"
            continue
        if kept_pos:
            corr = np.abs(ranks[:, kept_pos].T @ ranks[:, pos])
            worst = int(np.argmax(corr))
            if corr[worst] > cfg.max_abs_corr:
                reason[j] = f"near-duplicate of {names[order[kept_pos[worst]]]} (|rho| {corr[worst]:.4f})"
                continue
        kept.append(j)
        kept_pos.append(pos)
    report = [{"feature": names[j], "kept": reason[j] is None, "reason": reason[j] or "kept",
               "score": float(score[j]), "missing": float(missing[j])} for j in range(n)]
    return [names[j] for j in kept], report
