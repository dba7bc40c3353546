"""The competition's `predict()` interface: stateful, one date_id per call, never raising.

The competition calls `predict(test, label_lags_1_batch, ..., label_lags_4_batch)` once per
date_id, in date order. `Server` keeps every test row it has seen and every label revealed so
far, builds features exactly as the pipeline does (same engineering, same persisted scaling
statistics, revealed labels only from their publication day) on a trailing slice of history,
runs every lag head, and returns one row with the batches' target columns in their order.

A bad day (missing or extra columns, empty or all-null rows, wrong dtypes, repeated or skipped
dates) never raises: what can be used is used, anything else falls back to the last good
forecast or, failing that, a baseline, and the event is logged.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import polars as pl
import torch

from spreadcast.config import FeaturesConfig
from spreadcast.data.layout import DATE, LABEL_DATE
from spreadcast.data.targets import Target, is_revealed
from spreadcast.features.engineer import engineer, family
from spreadcast.features.scaling import Scaler
from spreadcast.io import read_json
from spreadcast.serve.predictor import load_head, served_folder

log = logging.getLogger("spreadcast.serve")
ARTIFACTS_ENV = "SPREADCAST_ARTIFACTS"

# Trailing days of history the features of one day are built from: enough for the longest
# window (history + level window + largest horizon) on a column missing now and then.
TAIL_DAYS = 512
# A served date_id more than this many days after the last one is taken as malformed.
MAX_SKIP = 31


def _to_polars(frame) -> pl.DataFrame:
    if frame is None:
        return pl.DataFrame()
    if isinstance(frame, pl.DataFrame):
        return frame
    return pl.from_pandas(frame)


def _to_float(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return np.nan
    return out if np.isfinite(out) else np.nan


def _numeric(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """The named columns as float64 (rows x columns); absent, non-numeric or non-finite cells NaN."""
    if frame.height <= 4:                     # a served day: plain Python beats building expressions
        position = {c: i for i, c in enumerate(frame.columns)}
        at = [position.get(c) for c in columns]
        return np.array([[np.nan if i is None else _to_float(row[i]) for i in at] for row in frame.iter_rows()],
                        dtype=np.float64).reshape(frame.height, len(columns))
    have = set(frame.columns)
    present = [c for c in columns if c in have]
    out = np.full((frame.height, len(columns)), np.nan)
    if present and frame.height:
        values = frame.select([pl.col(c).cast(pl.Float64, strict=False) for c in present]).to_numpy()
        values = np.asarray(values, dtype=np.float64)
        index = {c: i for i, c in enumerate(columns)}
        out[:, [index[c] for c in present]] = np.where(np.isfinite(values), values, np.nan)
    return out


class Server:
    """Holds the trained artifacts and the state of the days served so far."""

    def __init__(self, artifacts: str | Path):
        root = Path(artifacts)
        registry = read_json(root / "data" / "registry.json")
        features = read_json(root / "features" / "registry.json")
        self.columns: list[str] = registry["features"]
        self.targets = [Target(**t) for t in registry["targets"]]
        self.target_names = [t.name for t in self.targets]
        self.lags = registry["lags"]
        self.engineering = FeaturesConfig(**features["engineering"])
        self.kinds: dict[str, str] = features["kinds"]
        self.scaler = Scaler.from_dict(read_json(root / "scaling" / "scaling.json"))
        tensors_meta = read_json(root / "tensors" / "meta.json")
        self.history = int(tensors_meta["history"])
        self.heads = [load_head(served_folder(root, lag), lag) for lag in self.lags]
        feature_index = {f: i for i, f in enumerate(self.scaler.features)}
        self.head_columns = [[feature_index[f] for f in head.features] for head in self.heads]
        # the price columns the models' features are made from (own families and spread legs)
        sources = {family(f) for f in self.scaler.features}
        legs = {c for t in self.targets if t.b is not None and f"spread[{t.a}|{t.b}]" in sources for c in t.columns}
        self.needed = [(j, c) for j, c in enumerate(self.columns) if c in sources or c in legs]
        # history known before the first served day: the training file's days only
        last_train = registry["train_dates"][1]
        prices = pl.read_parquet(root / "data" / "prices.parquet").filter(pl.col(DATE) <= last_train).tail(TAIL_DAYS)
        self.dates = prices[DATE].to_numpy().astype(np.int64)
        self.values = prices.select(self.columns).to_numpy().astype(np.float64)
        labels = pl.read_parquet(root / "data" / "labels.parquet")
        labels = labels.filter(pl.col(DATE) >= int(self.dates[0]) - 10)
        self.label_dates = labels[DATE].to_numpy().astype(np.int64)
        self.label_values = labels.select(self.target_names).to_numpy().astype(np.float64)
        self.revealed = pl.read_parquet(root / "data" / "revealed.parquet").head(0)
        self.last_good: dict[str, float] | None = None
        self.calls = 0
        self.fallbacks = 0

    # -- state -------------------------------------------------------------------------------
    def _add_day(self, test: pl.DataFrame, date_id: int) -> None:
        """Append (or replace) the day's prices; unknown, missing or malformed cells become null."""
        rows = test
        if DATE in test.columns and test.height > 1:
            rows = test.filter(pl.col(DATE).cast(pl.Int64, strict=False) == date_id)
        elif DATE in test.columns and test.height == 1 and _to_float(test[DATE][0]) != date_id:
            rows = test.head(0)
        latest = np.full(len(self.columns), np.nan)
        for row in _numeric(rows, self.columns):        # several rows for the day: the last value wins
            latest = np.where(np.isnan(row), latest, row)
        if date_id in self.dates:                       # a repeated day replaces what was there
            self.values[np.flatnonzero(self.dates == date_id)[0]] = latest
            return
        end = max(int(self.dates[-1]), date_id)
        dates = np.arange(max(int(self.dates[0]), end - TAIL_DAYS + 1), end + 1, dtype=np.int64)
        values = np.full((dates.size, len(self.columns)), np.nan)
        keep = self.dates >= dates[0]
        values[np.searchsorted(dates, self.dates[keep])] = self.values[keep]
        values[np.searchsorted(dates, date_id)] = latest
        self.dates, self.values = dates, values

    def _add_labels(self, batch: pl.DataFrame, lag: int) -> pl.DataFrame | None:
        """The batch's published labels as rows of the long `revealed` table (None if none)."""
        if batch.height == 0 or DATE not in batch.columns or LABEL_DATE not in batch.columns:
            return None
        names = [t.name for t in self.targets if t.lag == lag and t.name in batch.columns]
        if not names:
            return None
        values = _numeric(batch, names)                                   # (rows, targets)
        keys = _numeric(batch, [DATE, LABEL_DATE])
        ok = np.isfinite(keys).all(axis=1)
        ok[ok] &= is_revealed(keys[ok, 1], lag, keys[ok, 0])             # only what is published
        values, keys = values[ok], keys[ok].astype(np.int64)
        have = np.isfinite(values)
        rows, cols = np.nonzero(have)
        long = pl.DataFrame({DATE: keys[rows, 0], LABEL_DATE: keys[rows, 1],
                             "target": np.asarray(names, dtype=object)[cols].astype(str),
                             "value": values[rows, cols], "lag": np.full(rows.size, lag, dtype=np.int64)},
                            schema=self.revealed.schema)
        return long

    # -- forecasting -------------------------------------------------------------------------
    def _forecast(self, date_id: int) -> dict[str, float]:
        upto = int(np.searchsorted(self.dates, date_id, side="right"))   # the window ends on the day served
        dates = self.dates[:upto]
        prices = pl.from_numpy(self.values[:upto, [j for j, _ in self.needed]],
                               schema=[c for _, c in self.needed]).with_columns(pl.Series(DATE, dates))
        # labels from the training files, aligned to the served dates (none after train ends)
        labels = np.full((dates.size, len(self.target_names)), np.nan)
        at = np.clip(np.searchsorted(self.label_dates, dates), 0, max(len(self.label_dates) - 1, 0))
        found = (self.label_dates[at] == dates) if len(self.label_dates) else np.zeros(dates.size, bool)
        labels[found] = self.label_values[at[found]]
        names, matrix = engineer(prices, self.engineering, self.targets, labels, self.revealed,
                                 self.kinds, only=self.scaler.features)
        index = {n: j for j, n in enumerate(names)}
        window = matrix[-self.history:, [index[f] for f in self.scaler.features]]
        scaled, missing = self.scaler.model_inputs(window)
        x = torch.from_numpy(scaled.astype(np.float32))[None]
        m = torch.from_numpy(missing.astype(np.float32))[None]
        out: dict[str, float] = {}
        with torch.no_grad():
            for head, cols in zip(self.heads, self.head_columns):
                forecast, _ = head.model(x[:, :, cols], m[:, :, cols])   # standardised, as in predict_rows
                for name, value in zip(head.targets, forecast[0].numpy()):
                    out[name] = float(value)
        return out

    def _baseline(self) -> dict[str, float]:
        """Fallback without a model: minus the last revealed label (short-term reversal), else 0."""
        latest = {}
        if self.revealed.height:
            last = self.revealed.sort(DATE).group_by("target").last()
            latest = dict(zip(last["target"].to_list(), last["value"].to_list()))
        return {n: -float(latest.get(n, 0.0)) for n in self.target_names}

    def predict(self, test, *batches) -> pl.DataFrame:
        self.calls += 1
        columns = self._reply_columns(batches, self.target_names)
        try:
            frames = [_to_polars(b) for b in batches]
            test = _to_polars(test)
            date_id = self._date_of(test, frames)
            if not int(self.dates[0]) <= date_id <= int(self.dates[-1]) + MAX_SKIP:
                raise ValueError(f"date_id {date_id} is outside the served history "
                                 f"{int(self.dates[0])}..{int(self.dates[-1]) + MAX_SKIP}; state left unchanged")
            self._add_day(test, date_id)
            new = [self._add_labels(frame, lag) for lag, frame in zip(range(1, len(frames) + 1), frames)]
            new = [frame for frame in new if frame is not None and frame.height]
            if new:
                incoming = pl.concat(new)
                kept = self.revealed.filter(pl.col(DATE) >= int(self.dates[0]))
                if kept.height and incoming[DATE].min() <= kept[DATE].max():   # a repeated day's labels replace
                    kept = kept.join(incoming.select(DATE, "target").unique(), on=[DATE, "target"], how="anti")
                self.revealed = pl.concat([kept, incoming])
            values = self._forecast(date_id)
            if not all(np.isfinite(v) for v in values.values()):
                raise ValueError("non-finite forecast")
            self.last_good = values
        except Exception as exc:  # a served day must never raise
            self.fallbacks += 1
            log.warning("day %s: %s; falling back to %s", self.calls, exc,
                        "the last good forecast" if self.last_good else "the baseline")
            values = self.last_good or self._baseline()
        return self._reply(values, columns)

    def _date_of(self, test: pl.DataFrame, frames: list[pl.DataFrame]) -> int:
        for frame in [test, *frames]:
            if DATE in frame.columns and frame.height:
                ids = frame[DATE].cast(pl.Int64, strict=False).drop_nulls()
                if len(ids):
                    return int(ids[0])
        return int(self.dates[-1]) + 1                   # no date given: take the next day

    @staticmethod
    def _reply_columns(batches, default: list[str]) -> list[str]:
        """The batches' target columns in their order (each once); `default` if none."""
        columns: dict[str, None] = {}
        for batch in batches:
            try:
                names = [str(c) for c in getattr(batch, "columns", [])]
            except Exception:     # a broken frame names no columns
                names = []
            columns.update((c, None) for c in names if c not in (DATE, LABEL_DATE))
        return list(columns) or list(default)

    @staticmethod
    def _reply(values: dict[str, float], columns: list[str]) -> pl.DataFrame:
        row = np.array([values.get(c, 0.0) for c in columns], dtype=np.float64)
        row = np.where(np.isfinite(row), row, 0.0)
        if row.size > 1 and np.ptp(row) == 0:
            row = row + 1e-9 * np.arange(row.size)      # the metric is undefined on a constant row
        return pl.DataFrame({c: [float(v)] for c, v in zip(columns, row)})


_SERVER: Server | None = None


def predict(test, label_lags_1_batch=None, label_lags_2_batch=None, label_lags_3_batch=None,
            label_lags_4_batch=None) -> pl.DataFrame:
    """The competition entry point. Artifacts are read once, from $SPREADCAST_ARTIFACTS
    (default `artifacts`, the pipeline's output folder, or an exported bundle)."""
    global _SERVER
    batches = (label_lags_1_batch, label_lags_2_batch, label_lags_3_batch, label_lags_4_batch)
    if _SERVER is None:
        try:
            _SERVER = Server(os.environ.get(ARTIFACTS_ENV, "artifacts"))
        except Exception as exc:
            log.error("cannot load artifacts: %s; serving zeros", exc)
            columns = Server._reply_columns(batches, ["target_0", "target_1"])
            return Server._reply({}, columns)
    return _SERVER.predict(test, *batches)
