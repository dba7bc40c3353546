"""Engineered features from published prices, each computed on its column's own calendar.

A value at date t uses only cells published at or before t. Returns are taken between a
column's consecutive observations, so a holiday (an empty cell) gives a missing feature on
that day and the next return spans the gap: no fake zero return, no jump.
"""
from __future__ import annotations

import re

import numpy as np
import polars as pl

from spreadcast.data.layout import DATE

VOLUME_LIKE = re.compile(r"(volume|open_interest)$", re.IGNORECASE)


def column_kind(name: str, values: np.ndarray) -> str:
    """'volume' (counts: log1p changes), 'price' (positive: log returns) or 'level' (changes)."""
    observed = values[np.isfinite(values)]
    if VOLUME_LIKE.search(name) and (observed >= 0).all():
        return "volume"
    if observed.size and (observed > 0).all():
        return "price"
    return "level"


def _on_calendar(values: np.ndarray, lags: list[int], transform) -> list[np.ndarray]:
    """Differences of transform(values) over `lags` observations of the column itself."""
    idx = np.flatnonzero(np.isfinite(values))
    series = transform(values[idx])
    out = []
    for h in lags:
        feature = np.full(values.shape, np.nan)
        if idx.size > h:
            feature[idx[h:]] = series[h:] - series[:-h]
        out.append(feature)
    return out


def engineer(prices: pl.DataFrame, horizons: list[int]) -> tuple[list[str], np.ndarray]:
    """Feature names and matrix (dates x features, NaN where missing) from the price table."""
    names: list[str] = []
    blocks: list[np.ndarray] = []
    for column in prices.columns:
        if column == DATE:
            continue
        values = prices[column].to_numpy().astype(np.float64)
        kind = column_kind(column, values)
        if kind == "price":
            feats = _on_calendar(values, horizons, np.log)
            names += [f"{column}__ret{h}" for h in horizons]
        elif kind == "volume":
            feats = _on_calendar(values, [1], np.log1p)
            names.append(f"{column}__dlog1p")
        else:
            feats = _on_calendar(values, [1], lambda v: v)
            names.append(f"{column}__diff")
        blocks.extend(feats)
    matrix = np.stack(blocks, axis=1) if blocks else np.empty((prices.height, 0))
    return names, matrix
