"""Target pairs, the target formula, and the label reveal rule.

target(t, lag, A - B) = log(P_A[t+lag+1] / P_A[t+1]) - log(P_B[t+lag+1] / P_B[t+1]),
missing when any of those prices is missing; a single-column pair drops the B term.
The label of date d for lag k is published on date d + k + 1 and usable from then on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from spreadcast.errors import DataError

PAIR_SEPARATOR = " - "


@dataclass(frozen=True)
class Target:
    name: str
    lag: int
    a: str
    b: str | None

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.a,) if self.b is None else (self.a, self.b)

    def to_dict(self) -> dict:
        return asdict(self)


def parse_pair(pair: str, where: str) -> tuple[str, str | None]:
    """Split 'A - B' or 'A' into column names; `where` names the file and row for errors."""
    if not isinstance(pair, str) or not pair.strip():
        raise DataError(f"{where}: empty pair")
    parts = pair.split(PAIR_SEPARATOR)
    if len(parts) > 2 or any(not p or p != p.strip() or " " in p for p in parts):
        raise DataError(f"{where}: malformed pair {pair!r} (expected 'A' or 'A - B')")
    return parts[0], (parts[1] if len(parts) == 2 else None)


def publication_date(label_date_id, lag):
    """The date_id on which the label of `label_date_id` for `lag` is published: the last price
    it uses is that of `label_date_id + lag + 1`. The one place the reveal rule is written; it
    takes ints, numpy arrays and polars expressions alike."""
    return label_date_id + lag + 1


def is_revealed(label_date_id, lag, date_id):
    """True where the label of `label_date_id` for `lag` is public on `date_id`."""
    return publication_date(label_date_id, lag) <= date_id


def forward_spread(log_prices: np.ndarray, ia: int, ib: int | None, lag: int) -> np.ndarray:
    """Target series over a dense date axis from log prices (dates x columns)."""
    n = log_prices.shape[0]
    out = np.full(n, np.nan)
    if n <= lag + 1:
        return out
    a = log_prices[:, ia]
    value = a[lag + 1:] - a[1:n - lag]
    if ib is not None:
        b = log_prices[:, ib]
        value = value - (b[lag + 1:] - b[1:n - lag])
    out[: n - lag - 1] = value
    return out


def compute_labels(log_prices: np.ndarray, columns: list[str], targets: list[Target]) -> np.ndarray:
    """Labels (dates x targets) from log prices on a dense, contiguous date axis."""
    index = {c: i for i, c in enumerate(columns)}
    labels = np.empty((log_prices.shape[0], len(targets)))
    for j, t in enumerate(targets):
        labels[:, j] = forward_spread(log_prices, index[t.a], None if t.b is None else index[t.b], t.lag)
    return labels
