"""Feature pruning from the trained gates.

Each feature has a score in [0, 1]: its gate, or (`score: saliency`, the default) its gate
times the norm of the linear-path weights behind it, divided by the largest such product. A
gate alone is a poor guide, since the weights after it can make up for a small gate.
Policies: `threshold` keeps scores >= threshold, `top_k` the k largest, `mass` the fewest
largest scores whose sum reaches the given share of the total, `validate` the k largest for
the k among `candidates` whose linear path, re-solved by ridge on the training days, scores
best on the validation days (`count_by_validation`). Scores are rounded to 1e-6 and
ties broken by name, so tiny numerical differences between runs do not reorder the choice.
At least `min_keep` features always stay.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from spreadcast.config import PruneConfig


def ranking(scores: np.ndarray, names: list[str]) -> list[int]:
    """Feature indices from the highest score down (rounded to 1e-6, ties by name)."""
    g = np.round(np.asarray(scores, dtype=np.float64), 6)
    return sorted(range(len(names)), key=lambda j: (-g[j], names[j]))


def count_by_validation(scores: np.ndarray, names: list[str], candidates: list[int],
                        val_sharpe: Callable[[list[int]], float]) -> tuple[int, dict[int, float]]:
    """The candidate count whose top features score best by `val_sharpe(indices)`, and every
    candidate's score; the smaller count wins a tie."""
    order = ranking(scores, names)
    tried = {k: val_sharpe(order[:k]) for k in sorted({min(k, len(names)) for k in candidates})}
    return best_count(tried), tried


def best_count(tried: dict[int, float]) -> int:
    """The count with the best score (NaN counts as worst); the smaller count wins a tie."""
    return max(tried, key=lambda k: (tried[k] if np.isfinite(tried[k]) else -np.inf, -k))


def select(scores: np.ndarray, names: list[str], cfg: PruneConfig,
           count: int | None = None) -> tuple[list[str], list[dict]]:
    """Kept feature names (in their original order) and a report line per feature. `count` is
    the number chosen on validation days, which the `validate` policy needs."""
    g = np.round(np.asarray(scores, dtype=np.float64), 6)
    order = ranking(scores, names)
    if cfg.policy == "validate":
        if count is None:
            raise ValueError("prune policy 'validate' needs the count chosen on validation days")
        n_keep = count
    elif cfg.policy == "threshold":
        n_keep = int((g >= cfg.threshold).sum())
    elif cfg.policy == "top_k":
        n_keep = cfg.top_k
    else:
        cumulative = np.cumsum(g[order]) / max(g.sum(), 1e-12)
        n_keep = int(np.searchsorted(cumulative, cfg.mass - 1e-12) + 1)
    n_keep = min(len(names), max(n_keep, cfg.min_keep))
    keep = set(order[:n_keep])
    report = [{"feature": names[j], "score": float(scores[j]), "rank": r + 1, "kept": j in keep}
              for r, j in enumerate(order)]
    return [n for j, n in enumerate(names) if j in keep], report
