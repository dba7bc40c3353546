"""Engineered features from published data, each computed on its own calendar.

A value at date t uses only cells published at or before t:

- price-like columns (positive): log returns over several horizons, taken between the
  column's own consecutive observations (a holiday gives a missing value that day, and the next
  return spans the gap: no fake zero return, no jump); volatility of the 1-day returns; and the
  trailing z-score of the log level, since levels carry information that returns lose;
- volume-like columns (volume, open interest): change and trailing z-score of log(1 + x);
- other columns (rates, indices, anything that takes signs): first difference, trailing z-score
  and the level itself (`levels`; the scaling stage standardises it on the training fold: a
  stationary series' level is often what carries its information);
- the spread series of every target pair, log A - log B on the days both are published: its
  changes over the same horizons, its trailing z-score and its deviations from trailing
  exponentially weighted means (`deviation_halflives`: what a spread reverting to its recent
  average is forecast by; on a single price they would nearly repeat its smoothed returns);
- revealed labels: the label of date d for lag k enters at t = d + k + 1, the day it is published.

Each target also has its *own* features (`own_features`, with `own`): the changes, z-score and
deviations of its own pair spread (of its one price for a single-asset target) and its own
revealed label, one per slot of `own_slots`, the inputs of the blend's own-series component.

Missing stays NaN here; the windows stage turns it into an explicit mask, never a silent fill.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import polars as pl

from spreadcast.config import FeaturesConfig
from spreadcast.data.layout import DATE, LABEL_DATE
from spreadcast.data.targets import Target, is_revealed, publication_date

LEVEL = "__level"   # the suffix of a signed series' level feature (`features.levels`)
VOLUME_LIKE = re.compile(r"(volume|open_interest)$", re.IGNORECASE)


def column_kind(name: str, values: np.ndarray) -> str:
    """'volume' (counts: log1p changes), 'price' (positive: log returns) or 'level' (changes)."""
    observed = values[np.isfinite(values)]
    if VOLUME_LIKE.search(name) and (observed >= 0).all():
        return "volume"
    if observed.size and (observed > 0).all():
        return "price"
    return "level"


def _diffs(series: np.ndarray, idx: np.ndarray, n: int, horizons: list[int]) -> list[np.ndarray]:
    """Changes of an observed series over `horizons` observations, scattered onto n dates."""
    out = []
    for h in horizons:
        feature = np.full(n, np.nan)
        if idx.size > h:
            feature[idx[h:]] = series[h:] - series[:-h]
        out.append(feature)
    return out


def _trailing(series: np.ndarray, window: int, stat: str) -> np.ndarray:
    """Trailing statistic over the last `window` observations (needs a full window)."""
    out = np.full(series.shape, np.nan)
    if series.size < window:
        return out
    view = np.lib.stride_tricks.sliding_window_view(series, window)
    if stat == "std":
        out[window - 1:] = view.std(axis=1)
    else:
        std = view.std(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[window - 1:] = np.where(std > 0, (series[window - 1:] - view.mean(axis=1)) / std, 0.0)
    return out


def deviation_kernel(halflife: float) -> np.ndarray:
    """Weights of the trailing mean that a deviation is taken from, oldest first: decay
    0.5 ** (1 / halflife) per observation over the last 4 half-lives (15/16 of the infinite
    average's weight), normalised to sum to 1."""
    window = max(2, int(np.ceil(4 * halflife)))
    w = 0.5 ** (np.arange(window - 1, -1, -1) / halflife)
    return w / w.sum()


def _deviation(series: np.ndarray, halflife: float) -> np.ndarray:
    """The series minus its trailing exponentially weighted mean (needs a full kernel)."""
    w = deviation_kernel(halflife)
    out = np.full(series.shape, np.nan)
    if series.size >= w.size:
        out[w.size - 1:] = series[w.size - 1:] - np.lib.stride_tricks.sliding_window_view(series, w.size) @ w
    return out


def deviation_name(halflife: float) -> str:
    return f"dev{halflife:g}"


def _scatter(values: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    out[idx] = values
    return out


def column_kinds(prices: pl.DataFrame) -> dict[str, str]:
    """The kind of every column, decided once on the full history and persisted, so a short
    slice of history (serving) engineers the same features as training did."""
    return {c: column_kind(c, prices[c].to_numpy().astype(np.float64)) for c in prices.columns if c != DATE}


def column_features(name: str, values: np.ndarray, cfg: FeaturesConfig, kind: str | None = None) -> dict[str, np.ndarray]:
    n = values.shape[0]
    idx = np.flatnonzero(np.isfinite(values))
    kind = kind or column_kind(name, values)
    out: dict[str, np.ndarray] = {}
    if kind == "price":
        logv = np.log(values[idx])
        for h, f in zip(cfg.return_horizons, _diffs(logv, idx, n, cfg.return_horizons)):
            out[f"{name}__ret{h}"] = f
        ret1 = np.diff(logv, prepend=np.nan)
        out[f"{name}__vol{cfg.vol_window}"] = _scatter(_trailing(ret1[1:], cfg.vol_window, "std"), idx[1:], n)
        out[f"{name}__z{cfg.level_window}"] = _scatter(_trailing(logv, cfg.level_window, "z"), idx, n)
    else:
        series = np.log1p(values[idx]) if kind == "volume" else values[idx]
        tag = "dlog1p" if kind == "volume" else "diff"
        out[f"{name}__{tag}"] = _diffs(series, idx, n, [1])[0]
        out[f"{name}__z{cfg.level_window}"] = _scatter(_trailing(series, cfg.level_window, "z"), idx, n)
        if kind == "level" and cfg.levels:
            out[f"{name}{LEVEL}"] = _scatter(series, idx, n)
    return out


def own_slots(cfg: FeaturesConfig) -> list[str]:
    """The kinds of a target's own features, in order: the same for every target."""
    return ([f"chg{h}" for h in cfg.return_horizons] + ["z"] + [deviation_name(hl) for hl in cfg.deviation_halflives]
            + ["revealed"])


def own_features(target: Target, cfg: FeaturesConfig) -> list[str | None]:
    """The names of a target's own features, one per `own_slots` entry (None: the slot has no
    feature for it: a single price has no deviation, and no spreads or revealed labels where
    they are off)."""
    if target.b is None:
        stem = target.a
        series = [f"{stem}__ret{h}" for h in cfg.return_horizons] + [f"{stem}__z{cfg.level_window}"]
        series += [None] * len(cfg.deviation_halflives)
    elif cfg.spreads:
        stem = f"spread[{target.a}|{target.b}]"
        series = [f"{stem}__chg{h}" for h in cfg.return_horizons] + [f"{stem}__z{cfg.spread_z_window}"]
        series += [f"{stem}__{deviation_name(hl)}" for hl in cfg.deviation_halflives]
    else:
        series = [None] * (len(cfg.return_horizons) + 1 + len(cfg.deviation_halflives))
    return series + [f"{target.name}__revealed" if cfg.revealed_labels else None]


def level_features(names: list[str]) -> list[str]:
    """The level features among `names` (each signed series' level, `features.levels`), in order."""
    return [n for n in names if n.endswith(LEVEL)]


def family(name: str) -> str:
    """The source of a feature: its column, pair spread or target."""
    return name.split("__")[0]


def spread_features(prices: pl.DataFrame, targets: list[Target], cfg: FeaturesConfig,
                    wanted: set[str] | None = None) -> dict[str, np.ndarray]:
    """Changes, z-score and deviations of log A - log B for every distinct pair of the targets."""
    out: dict[str, np.ndarray] = {}
    seen = set()
    for t in targets:
        key = (t.a, t.b)
        if t.b is None or key in seen or (wanted is not None and f"spread[{t.a}|{t.b}]" not in wanted):
            continue
        seen.add(key)
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = np.log(prices[t.a].to_numpy()) - np.log(prices[t.b].to_numpy())
        idx = np.flatnonzero(np.isfinite(spread))
        stem = f"spread[{t.a}|{t.b}]"
        n = spread.shape[0]
        for h, f in zip(cfg.return_horizons, _diffs(spread[idx], idx, n, cfg.return_horizons)):
            out[f"{stem}__chg{h}"] = f
        out[f"{stem}__z{cfg.spread_z_window}"] = _scatter(_trailing(spread[idx], cfg.spread_z_window, "z"), idx, n)
        for hl in cfg.deviation_halflives:
            out[f"{stem}__{deviation_name(hl)}"] = _scatter(_deviation(spread[idx], hl), idx, n)
    return out


def revealed_labels(date_ids: np.ndarray, labels: np.ndarray, revealed: pl.DataFrame,
                    targets: list[Target]) -> np.ndarray:
    """At row t, the label of date t - k - 1 for each target of lag k (published on t).

    `labels` (dates x targets) are the labels known from the training files, `revealed` the
    long table of the lagged test label files; a value is used only from its publication day.
    """
    out = np.full(labels.shape, np.nan)
    for j, t in enumerate(targets):
        shift = publication_date(0, t.lag)          # rows between a label's date and its publication
        out[shift:, j] = labels[:-shift, j]
        gap = date_ids[shift:] - date_ids[:-shift] != shift     # dense axes have none; be safe
        out[shift:, j][gap] = np.nan
    fill_published(out, date_ids, revealed, [t.name for t in targets], at=DATE)
    return out


def fill_published(out: np.ndarray, date_ids: np.ndarray, revealed: pl.DataFrame, target_names: list[str],
                   at: str) -> None:
    """Fill the missing cells of `out` (dates x targets) with the values of the long `revealed`
    table that are public on the day they came with, at the row of their `at` column (DATE: the
    day published; LABEL_DATE: the label's own date). Labels already there (from the training
    files) come first."""
    column = {n: j for j, n in enumerate(target_names)}
    public = revealed.filter(is_revealed(pl.col(LABEL_DATE), pl.col("lag"), pl.col(DATE))
                             & pl.col("target").is_in(list(column)))
    if public.height == 0:
        return
    d = public[at].to_numpy()
    rows = np.clip(np.searchsorted(date_ids, d), 0, len(date_ids) - 1)
    cols = public["target"].replace_strict(column, return_dtype=pl.Int64).to_numpy()
    values = public["value"].to_numpy()
    ok = date_ids[rows] == d
    rows, cols, values = rows[ok], cols[ok], values[ok]
    free = np.isnan(out[rows, cols])
    out[rows[free], cols[free]] = values[free]


def engineer(prices: pl.DataFrame, cfg: FeaturesConfig, targets: list[Target] | None = None,
             labels: np.ndarray | None = None, revealed: pl.DataFrame | None = None,
             kinds: dict[str, str] | None = None, only: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Feature names and matrix (dates x features, NaN where missing).

    `kinds` fixes each column's kind (see `column_kinds`); `only` limits the work to the
    sources of the named features (serving computes just what the models read).
    """
    wanted = None if only is None else {family(n) for n in only}
    features: dict[str, np.ndarray] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for column in prices.columns:
            if column != DATE and (wanted is None or column in wanted):
                values = prices[column].to_numpy().astype(np.float64)
                features.update(column_features(column, values, cfg, (kinds or {}).get(column)))
        if targets is not None and cfg.spreads:
            features.update(spread_features(prices, targets, cfg, wanted))
    if targets is not None and labels is not None and cfg.revealed_labels:
        empty = pl.DataFrame(schema={DATE: pl.Int64, LABEL_DATE: pl.Int64, "target": pl.String,
                                     "value": pl.Float64, "lag": pl.Int64})
        matrix = revealed_labels(prices[DATE].to_numpy(), labels, empty if revealed is None else revealed, targets)
        for j, t in enumerate(targets):
            if wanted is None or t.name in wanted:
                features[f"{t.name}__revealed"] = matrix[:, j]
    names = list(features)
    matrix = np.stack([features[n] for n in names], axis=1) if names else np.empty((prices.height, 0))
    return names, matrix
