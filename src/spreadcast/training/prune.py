"""Feature pruning from the trained gates.

Policies: `threshold` keeps gates >= threshold, `top_k` the k largest, `mass` the fewest
largest gates whose sum reaches the given share of the total. Gates are rounded to 1e-6 and
ties broken by name, so tiny numerical differences between runs do not reorder the choice.
At least `min_keep` features always stay.
"""
from __future__ import annotations

import numpy as np

from spreadcast.config import PruneConfig


def select(gates: np.ndarray, names: list[str], cfg: PruneConfig) -> tuple[list[str], list[dict]]:
    """Kept feature names (in their original order) and a report line per feature."""
    g = np.round(np.asarray(gates, dtype=np.float64), 6)
    order = sorted(range(len(names)), key=lambda j: (-g[j], names[j]))
    if cfg.policy == "threshold":
        n_keep = int((g >= cfg.threshold).sum())
    elif cfg.policy == "top_k":
        n_keep = cfg.top_k
    else:
        cumulative = np.cumsum(g[order]) / max(g.sum(), 1e-12)
        n_keep = int(np.searchsorted(cumulative, cfg.mass - 1e-12) + 1)
    n_keep = min(len(names), max(n_keep, cfg.min_keep))
    keep = set(order[:n_keep])
    report = [{"feature": names[j], "gate": float(gates[j]), "rank": r + 1, "kept": j in keep}
              for r, j in enumerate(order)]
    return [n for j, n in enumerate(names) if j in keep], report
