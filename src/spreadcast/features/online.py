"""The engineered features of one new day, from running state instead of the whole history.

`engineer` builds every feature of every date from the full price table; serving needs only
the newest date, once a day. `OnlineFeatures` keeps, for each series a feature is made from
(a transformed price column or a target pair's log spread), its last few *observed* values;
a step pushes the day's observations and computes the day's features from those buffers, so
a day costs the same whatever the length of the history. The result equals `engineer` on the
same history (tests/test_online.py compares them feature by feature):

- a series is observed on a day where `engineer` takes it as observed (a finite raw price for
  a column, a finite log spread for a pair); on other days all its features are missing;
- a change over h is taken between observations h apart, a volatility over the last
  `vol_window` one-step changes, a z-score over the last `level_window` (or `spread_z_window`)
  observations, a deviation from the trailing mean over its kernel's observations, each missing
  until that many observations exist; a level is the last observation;
- a revealed label at date t is the training label of t - lag - 1 when known, else the value
  published on t (see `targets.publication_date`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spreadcast.config import FeaturesConfig
from spreadcast.data.targets import Target, publication_date
from spreadcast.features.engineer import deviation_kernel, deviation_name, family


@dataclass
class _Group:
    """Series that share a transform and a feature recipe; their buffers are one array."""

    transform: str                   # log | log1p | none | spread
    horizons: list[int]
    vol_window: int                  # 0: no volatility feature
    z_window: int
    kernels: list[np.ndarray]        # deviation kernels (oldest first), one feature each
    level: bool                      # the last observation itself, as the final feature
    sources: np.ndarray              # (series, 2) column indices (b = -1 for a column)
    stems: list[str]                 # feature name stem of each series
    suffixes: list[str]              # feature suffixes, in output order

    def __post_init__(self):
        self.depth = max(max(self.horizons) + 1, self.vol_window + 1, self.z_window,
                         *(k.size for k in self.kernels))
        self.buffer = np.full((len(self.stems), self.depth), np.nan)
        self.count = np.zeros(len(self.stems), dtype=np.int64)

    def observe(self, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Observed flags and transformed values of the day's raw prices."""
        a = prices[..., self.sources[:, 0]]
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.transform == "spread":
                value = np.log(a) - np.log(prices[..., self.sources[:, 1]])
                return np.isfinite(value), value
            observed = np.isfinite(a)
            if self.transform == "log":
                return observed, np.log(a)
            if self.transform == "log1p":
                return observed, np.log1p(a)
            return observed, a

    def warm(self, block: np.ndarray) -> None:
        """Push a block of days (days x columns) at once, computing no feature."""
        observed, value = self.observe(block)
        for i in range(len(self.stems)):
            seen = value[observed[:, i], i][-self.depth:]
            if seen.size:
                self.buffer[i, :-seen.size] = self.buffer[i, seen.size:] if seen.size < self.depth else np.nan
                self.buffer[i, -seen.size:] = seen
            self.count[i] += int(observed[:, i].sum())

    def step(self, prices: np.ndarray) -> np.ndarray:
        """Push the day's observations; the day's features (series x suffixes)."""
        observed, value = self.observe(prices)
        rows = np.flatnonzero(observed)
        if rows.size:
            self.buffer[rows, :-1] = self.buffer[rows, 1:]
            self.buffer[rows, -1] = value[rows]
            self.count[rows] += 1
        out = np.full((len(self.stems), len(self.suffixes)), np.nan)
        if not rows.size:
            return out
        buf, count = self.buffer[rows], self.count[rows]
        last = buf[:, -1]
        column = 0
        for h in self.horizons:
            out[rows, column] = np.where(count > h, last - buf[:, -1 - h], np.nan)
            column += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.vol_window:
                changes = np.diff(buf[:, -(self.vol_window + 1):], axis=1)
                out[rows, column] = np.where(count > self.vol_window, changes.std(axis=1), np.nan)
                column += 1
            window = buf[:, -self.z_window:]
            std = window.std(axis=1)
            z = np.where(std > 0, (last - window.mean(axis=1)) / std, 0.0)
            out[rows, column] = np.where(count >= self.z_window, z, np.nan)
            column += 1
            for kernel in self.kernels:
                out[rows, column] = np.where(count >= kernel.size, last - buf[:, -kernel.size:] @ kernel, np.nan)
                column += 1
        if self.level:
            out[rows, column] = last
        return out

    def names(self) -> list[str]:
        return [f"{stem}__{suffix}" for stem in self.stems for suffix in self.suffixes]


class OnlineFeatures:
    """Running state that yields the features `names` of each new date, in that order.

    `columns` are the raw price columns in the order the day's values are given, `kinds` each
    column's kind as persisted by the features stage, `targets` the registry's targets.
    """

    def __init__(self, names: list[str], columns: list[str], kinds: dict[str, str],
                 targets: list[Target], cfg: FeaturesConfig):
        self.names = list(names)
        wanted = {family(n) for n in names}
        index = {c: i for i, c in enumerate(columns)}
        kernels = [deviation_kernel(hl) for hl in cfg.deviation_halflives]
        deviations = [deviation_name(hl) for hl in cfg.deviation_halflives]
        z_level = f"z{cfg.level_window}"
        recipes: dict[str, tuple] = {    # transform, horizons, vol window, z window, kernels, level, suffixes
            "price": ("log", cfg.return_horizons, cfg.vol_window, cfg.level_window, [], False,
                      [f"ret{h}" for h in cfg.return_horizons] + [f"vol{cfg.vol_window}", z_level]),
            "volume": ("log1p", [1], 0, cfg.level_window, [], False, ["dlog1p", z_level]),
            "level": ("none", [1], 0, cfg.level_window, [], cfg.levels,
                      ["diff", z_level] + (["level"] if cfg.levels else [])),
        }
        self.groups: list[_Group] = []
        for kind, (transform, horizons, vol, z, kern, level, suffixes) in recipes.items():
            stems = [c for c in columns if c in wanted and kinds.get(c) == kind]
            if stems:
                sources = np.array([[index[c], -1] for c in stems], dtype=np.int64)
                self.groups.append(_Group(transform, list(horizons), vol, z, kern, level, sources, stems, suffixes))
        pairs: dict[str, tuple[int, int]] = {}
        for t in targets:
            stem = f"spread[{t.a}|{t.b}]"
            if t.b is not None and cfg.spreads and stem in wanted and stem not in pairs:
                pairs[stem] = (index[t.a], index[t.b])
        if pairs:
            self.groups.append(_Group("spread", list(cfg.return_horizons), 0, cfg.spread_z_window, kernels, False,
                                      np.array(list(pairs.values()), dtype=np.int64), list(pairs),
                                      [f"chg{h}" for h in cfg.return_horizons] + [f"z{cfg.spread_z_window}",
                                                                                  *deviations]))
        # where each group's outputs and each revealed label go in `names`
        position = {n: i for i, n in enumerate(self.names)}
        self._scatter = []
        for group in self.groups:
            produced = group.names()
            take = np.array([i for i, n in enumerate(produced) if n in position], dtype=np.int64)
            put = np.array([position[produced[i]] for i in take], dtype=np.int64)
            self._scatter.append((take, put))
        self.label_targets = np.array([j for j, t in enumerate(targets) if f"{t.name}__revealed" in position],
                                      dtype=np.int64)
        self.label_put = np.array([position[f"{targets[j].name}__revealed"] for j in self.label_targets],
                                  dtype=np.int64)
        self.label_shift = np.array([publication_date(0, targets[j].lag) for j in self.label_targets],
                                    dtype=np.int64)
        produced = {n for g in self.groups for n in g.names()} | {f"{targets[j].name}__revealed"
                                                                  for j in self.label_targets}
        unknown = [n for n in self.names if n not in produced]
        if unknown:
            raise KeyError(f"feature {unknown[0]!r} cannot be computed from the price columns, "
                           f"pairs and targets given ({len(unknown)} such features)")

    def step(self, prices: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """The features of the next date (in `names` order).

        `prices` holds the date's raw values of every column (NaN where not published);
        `labels` the revealed label of every target for this date (NaN where none), as given by
        `revealed_row`.
        """
        row = np.full(len(self.names), np.nan)
        for group, (take, put) in zip(self.groups, self._scatter):
            row[put] = group.step(prices).ravel()[take]
        if labels is not None and self.label_targets.size:
            row[self.label_put] = labels[self.label_targets]
        return row

    def warm(self, block: np.ndarray) -> None:
        """Take in a block of days (days x columns) before the first `step`, as if stepped
        through them, without computing their features (a fast start from a long history)."""
        for group in self.groups:
            group.warm(np.asarray(block, dtype=np.float64))

    def copy_state(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(g.buffer.copy(), g.count.copy()) for g in self.groups]

    def restore_state(self, state: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for group, (buffer, count) in zip(self.groups, state):
            group.buffer[...] = buffer
            group.count[...] = count


def lag_columns(targets: list[Target]) -> dict[int, np.ndarray]:
    """The target columns of each lag (registry order), for `revealed_row`."""
    return {lag: np.array([j for j, t in enumerate(targets) if t.lag == lag], dtype=np.int64)
            for lag in sorted({t.lag for t in targets})}


def revealed_row(date_id: int, columns_of_lag: dict[int, np.ndarray], train_labels, published: np.ndarray) -> np.ndarray:
    """The revealed label of every target at `date_id`: the training label of
    `date_id - lag - 1` where the training files have it, else what was `published` that day.

    `columns_of_lag` is `lag_columns(targets)`; `train_labels(d)` returns the training files'
    labels of date d (all targets) or None.
    """
    out = np.array(published, dtype=np.float64, copy=True)
    for lag, cols in columns_of_lag.items():
        known = train_labels(date_id - publication_date(0, lag))
        if known is None:
            continue
        values = known[cols]
        have = np.isfinite(values)
        out[cols[have]] = values[have]
    return out
