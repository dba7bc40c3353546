"""The competition's `predict()` interface: stateful, one date_id per call, never raising.

The competition calls `predict(test, label_lags_1_batch, ..., label_lags_4_batch)` once per
date_id, in date order. `Server` keeps running state: the engineered features of each new day
come from `OnlineFeatures` (the last observations of every series the models read, equal to the
pipeline's batch features), the model inputs of the last `windows.history` days sit in a ring,
and one call costs the same whatever the length of the history. Labels count only from their
publication day. The forecast is `predictor.Forecaster`'s, as in evaluation and submission; the
reply is one row with the batches' target columns in their order.

A repeated day replaces the last one (its state is restored first); a day earlier than the last
rebuilds the state from the trailing `TAIL_DAYS` of history kept for that purpose. A bad day
(missing or extra columns, empty or all-null rows, wrong dtypes, repeated or skipped dates)
never raises: what can be used is used, anything else falls back to the last good forecast or,
failing that, a baseline, and the event is logged.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import polars as pl

from spreadcast.config import FeaturesConfig
from spreadcast.data.layout import DATE, LABEL_DATE
from spreadcast.data.targets import Target, is_revealed
from spreadcast.features.online import OnlineFeatures, lag_columns, revealed_row
from spreadcast.features.scaling import Scaler
from spreadcast.io import read_json
from spreadcast.evaluation.blend import daily_ranks
from spreadcast.serve.predictor import Forecaster, load_blend, load_head, served_folder

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


_LAYOUTS: dict = {}      # what is derived from a frame layout, by (what, names...): see `_layout`
_NAMES: dict = {}        # id(frame) -> (frame, its column names), for the frames of the call served


def _layout(key: tuple, build, cache: dict = _LAYOUTS):
    """`build()`, cached in `cache` by `key`: the gateway sends the same layout every day, so
    what is derived from column names is derived once (what also depends on a server's targets
    goes in that server's own cache)."""
    found = cache.get(key)
    if found is None:
        if len(cache) > 256:
            cache.clear()
        found = cache[key] = build()
    return found


def _names(frame: pl.DataFrame) -> tuple[str, ...]:
    """A frame's column names, read once per served call (polars builds the list anew on each
    `columns`; `predict` clears this when it starts and ends)."""
    kept = _NAMES.get(id(frame))
    if kept is None or kept[0] is not frame:
        kept = _NAMES[id(frame)] = (frame, tuple(frame.columns))
    return kept[1]


def _positions(names: tuple[str, ...], columns: list[str]) -> tuple[list[int], list[int]]:
    """Where the wanted columns sit in a frame's columns."""
    def build():
        position = {c: i for i, c in enumerate(names)}
        at = [(j, position[c]) for j, c in enumerate(columns) if c in position]
        return [j for j, _ in at], [i for _, i in at]
    return _layout(("positions", names, tuple(columns)), build)


def _numeric(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """The named columns as float64 (rows x columns); absent, non-numeric or non-finite cells NaN.

    A served day (a few rows) is read through Python values, in one array call when every cell
    is a number or null and cell by cell otherwise; a larger frame through polars casts.
    """
    out = np.full((frame.height, len(columns)), np.nan)
    if not frame.height:
        return out
    to, source = _positions(_names(frame), columns)
    if not to:
        return out
    if frame.height <= 4:
        for r, row in enumerate(frame.rows()):
            cells = [row[i] for i in source]
            try:
                out[r, to] = np.array(cells, dtype=np.float64)          # None -> NaN
            except (TypeError, ValueError):
                out[r, to] = [_to_float(v) for v in cells]
    else:
        block = frame.select([pl.col(columns[j]).cast(pl.Float64, strict=False) for j in to]).to_numpy()
        out[:, to] = np.asarray(block, dtype=np.float64)
    out[~np.isfinite(out)] = np.nan
    return out


class _Tail:
    """The last days served (prices and labels published on each), kept to rebuild the state;
    appending is amortised constant time."""

    def __init__(self, dates: np.ndarray, n_columns: int, n_targets: int):
        self._dates = np.zeros(2 * TAIL_DAYS, dtype=np.int64)
        self._values = np.full((2 * TAIL_DAYS, n_columns), np.nan)
        self._published = np.full((2 * TAIL_DAYS, n_targets), np.nan)
        self.start, self.end = 0, len(dates)
        self._dates[:len(dates)] = dates

    @property
    def dates(self) -> np.ndarray:
        return self._dates[self.start:self.end]

    @property
    def values(self) -> np.ndarray:
        return self._values[self.start:self.end]

    @property
    def published(self) -> np.ndarray:
        return self._published[self.start:self.end]

    def append(self, date_id: int, values: np.ndarray | None = None, published: np.ndarray | None = None) -> None:
        if self.end == len(self._dates):                # full: move the last TAIL_DAYS - 1 days to the front
            keep = slice(self.end - (TAIL_DAYS - 1), self.end)
            n = TAIL_DAYS - 1
            for array in (self._dates, self._values, self._published):
                array[:n] = array[keep]
            self._values[n:] = np.nan
            self._published[n:] = np.nan
            self.start, self.end = 0, n
        self._dates[self.end] = date_id
        self._values[self.end] = np.nan if values is None else values
        self._published[self.end] = np.nan if published is None else published
        self.end += 1
        self.start = max(self.start, self.end - TAIL_DAYS)


class _Window:
    """The model inputs and missing flags of the last `length` days, oldest first: views into
    buffers twice as long. A new day moves the views by one row; once every `length` days the
    rows move back to the start. The whole window is not shifted each day (8 MB at full size)."""

    def __init__(self, length: int, width: int):
        self.length, self.start = length, 0
        self.values = np.zeros((2 * length, width), dtype=np.float32)
        self.gaps = np.ones((2 * length, width), dtype=np.float32)

    @property
    def inputs(self) -> np.ndarray:
        return self.values[self.start:self.start + self.length]

    @property
    def missing(self) -> np.ndarray:
        return self.gaps[self.start:self.start + self.length]

    def push(self, x: np.ndarray, m: np.ndarray) -> None:
        """The window slides by the day x, m (features,)."""
        if self.start + self.length == len(self.values):
            for rows in (self.values, self.gaps):
                rows[:self.length - 1] = rows[self.start + 1:]
            self.start = 0
        else:
            self.start += 1
        self.values[self.start + self.length - 1], self.gaps[self.start + self.length - 1] = x, m

    def pop(self, x: np.ndarray, m: np.ndarray) -> None:
        """Undo the last `push`: the window slides back, its first day x, m again."""
        if self.start == 0:
            for rows in (self.values, self.gaps):
                rows[1:self.length] = rows[:self.length - 1].copy()
        else:
            self.start -= 1
        self.values[self.start], self.gaps[self.start] = x, m


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
        self.history = int(read_json(root / "tensors" / "meta.json")["history"])
        heads = [load_head(served_folder(root, lag), lag) for lag in self.lags]
        self.blend = load_blend(root / "blend", ridge="all") if (root / "blend" / "blend.json").is_file() else None
        # only the features something served reads (not, say, those of the walk-forward folds)
        scaler = Scaler.from_dict(read_json(root / "scaling" / "scaling.json"))
        read = {f for head in heads for f in head.features}
        if self.blend is not None:
            read |= set(self.blend.ridge_inputs) | {f for slots in self.blend.own_features for f in slots if f}
        self.scaler = scaler.subset([f for f in scaler.features if f in read])
        self.forecaster = Forecaster(heads, self.scaler.features, self.target_names, self.blend)
        self.targets_of_lag = lag_columns(self.targets)
        # labels of the training files, by date, for the revealed-label features
        labels = pl.read_parquet(root / "data" / "labels.parquet")
        self.train_labels = dict(zip(labels[DATE].to_list(),
                                     labels.select(self.target_names).to_numpy().astype(np.float64)))
        # label rows not yet in the prior, by label date: the training labels, then the batches'
        upto = self.blend.prior_upto if self.blend is not None else max(self.train_labels, default=0)
        self.label_rows = {d: row.copy() for d, row in self.train_labels.items() if d > upto}
        # history known before the first served day: the training file's days only
        last_train = registry["train_dates"][1]
        prices = pl.read_parquet(root / "data" / "prices.parquet").filter(pl.col(DATE) <= last_train).tail(TAIL_DAYS)
        dates = prices[DATE].to_numpy().astype(np.int64)
        axis = np.arange(max(int(dates[0]), int(dates[-1]) - TAIL_DAYS + 1), int(dates[-1]) + 1)
        self.tail = _Tail(axis, len(self.columns), len(self.targets))
        kept = dates >= axis[0]
        self.tail.values[np.searchsorted(axis, dates[kept])] = prices.select(self.columns).to_numpy()[kept]
        self.latest_label = np.full(len(self.targets), np.nan)
        self.last_good: np.ndarray | None = None
        self.position = {n: j for j, n in enumerate(self.target_names)}
        self.layouts: dict = {}          # what this server derives from the frames' layouts
        self.calls = 0
        self.fallbacks = 0
        self._rebuild(reset=False)
        self.forecaster.freeze(self.inputs, self.missing)

    # -- state -------------------------------------------------------------------------------
    @property
    def inputs(self) -> np.ndarray:
        """The model inputs of the window's days (history x features), oldest first."""
        return self.window.inputs

    @property
    def missing(self) -> np.ndarray:
        return self.window.missing

    def _prior_reset(self) -> None:
        if self.blend is not None:
            self.prior = (self.blend.prior_sum.copy(), self.blend.prior_count.copy(), self.blend.prior_upto)

    def _prior_advance(self, date_id: int) -> None:
        """Add to the prior every label row complete by `date_id` (all its lags published)."""
        if self.blend is None:
            return
        total, count, upto = self.prior
        while upto < date_id - self.blend.delay:
            upto += 1
            row = self.label_rows.get(upto)
            if row is not None:
                ranks = daily_ranks(row[None])[0]
                have = np.isfinite(ranks)
                total[have] += ranks[have]
                count[have] += 1
        self.prior = (total, count, upto)

    def _prior_now(self) -> np.ndarray | None:
        if self.blend is None:
            return None
        total, count, _ = self.prior
        return np.where(count > 0, total / np.maximum(count, 1), 0.5)

    def _rebuild(self, reset: bool = True) -> None:
        """Running state from the kept tail of history, day by day (start-up, out-of-order days),
        and the heads' day terms of the window (`reset`)."""
        self._prior_reset()
        self.online = OnlineFeatures(self.scaler.features, self.columns, self.kinds, self.targets, self.engineering)
        self.window = _Window(self.history, len(self.scaler.features))
        self.before_last = None
        first = max(0, len(self.tail.dates) - self.history)      # days before the window: no features needed
        self.online.warm(self.tail.values[:first])
        for i in range(first, len(self.tail.dates)):
            self._step(int(self.tail.dates[i]), self.tail.values[i], self.tail.published[i], keep=False)
        if reset:
            self.forecaster.reset(self.inputs, self.missing)

    def _step(self, date_id: int, prices: np.ndarray, published: np.ndarray, keep: bool = True) -> None:
        """Advance the features, the input window and (`keep`: serving, not rebuilding) the heads'
        day terms by one day, keeping the state before it."""
        if keep:
            prior = None if self.blend is None else tuple(np.copy(v) for v in self.prior)
            # the window loses only its first day: keep that, not the whole window
            self.before_last = (self.online.copy_state(), self.inputs[0].copy(), self.missing[0].copy(), prior,
                                self.forecaster.state())
        self._prior_advance(date_id)
        labels = revealed_row(date_id, self.targets_of_lag, self.train_labels.get, published)
        row = self.online.step(prices, labels)
        scaled, gap = self.scaler.model_inputs(row[None])
        self.window.push(scaled[0], gap[0])
        if keep:
            self.forecaster.push(self.inputs[-1], self.missing[-1])

    def _prices_of(self, test: pl.DataFrame, date_id: int) -> np.ndarray:
        """The day's prices in registry order; unknown, missing or malformed cells NaN."""
        rows = test
        if DATE in _names(test) and test.height > 1:
            rows = test.filter(pl.col(DATE).cast(pl.Int64, strict=False) == date_id)
        elif DATE in _names(test) and test.height == 1 and _to_float(test[DATE][0]) != date_id:
            rows = test.head(0)
        latest = np.full(len(self.columns), np.nan)
        for row in _numeric(rows, self.columns):        # several rows for the day: the last value wins
            latest = np.where(np.isnan(row), latest, row)
        return latest

    def _labels_of(self, batch: pl.DataFrame, lag: int, date_id: int, published: np.ndarray) -> None:
        """Write into `published` (all targets) the batch's labels that are public on `date_id`."""
        names = _names(batch)
        cols, read = _layout(("labels", lag, names), lambda: self._label_columns(lag, names), self.layouts)
        if batch.height == 0 or not cols.size:
            return
        block = _numeric(batch, read)
        keys, values = block[:, :2], block[:, 2:]                             # (rows, targets)
        ok = (keys[:, 0] == date_id) & np.isfinite(keys[:, 1])
        ok[ok] &= is_revealed(keys[ok, 1], lag, keys[ok, 0])               # only what is published
        for row, label_date in zip(values[ok], keys[ok, 1].astype(np.int64)):   # the last row wins
            have = np.isfinite(row)
            published[cols[have]] = row[have]
            stored = self.label_rows.setdefault(int(label_date), np.full(len(self.targets), np.nan))
            free = np.isnan(stored[cols]) & have                     # labels from the training files first
            stored[cols[free]] = row[free]

    def _label_columns(self, lag: int, names: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
        """The lag's targets in a batch with columns `names` (none without its date columns), and
        the columns to read for them."""
        present = set(names)
        if DATE not in present or LABEL_DATE not in present:
            return np.empty(0, dtype=np.int64), []
        cols = [j for j in self.targets_of_lag.get(lag, []) if self.target_names[j] in present]
        return np.asarray(cols, dtype=np.int64), [DATE, LABEL_DATE, *(self.target_names[j] for j in cols)]

    def _advance(self, date_id: int, prices: np.ndarray, published: np.ndarray) -> None:
        """Take in the day served: a new day (after any skipped ones), the last day again, or
        an earlier day (the state is rebuilt from the tail)."""
        last = int(self.tail.dates[-1])
        if date_id > last:
            for skipped in range(last + 1, date_id):
                self.tail.append(skipped)
                self._step(skipped, self.tail.values[-1], self.tail.published[-1])
            self.tail.append(date_id, prices, published)
            self._step(date_id, prices, published)
            return
        i = int(np.searchsorted(self.tail.dates, date_id))
        self.tail.values[i] = prices                    # a repeated day replaces what was there
        kept = np.isnan(published)
        published[kept] = self.tail.published[i, kept]
        self.tail.published[i] = published
        if date_id == last and self.before_last is not None:
            state, first_inputs, first_missing, prior, terms = self.before_last
            self.window.pop(first_inputs, first_missing)
            self.online.restore_state(state)
            self.forecaster.restore(terms)
            if prior is not None:
                self.prior = (prior[0], prior[1], int(prior[2]))
            self._step(date_id, prices, published)
        else:
            self._rebuild()

    # -- forecasting -------------------------------------------------------------------------
    def _forecast(self) -> np.ndarray:
        """Every target's forecast (registry order) from the window of the last days."""
        return self.forecaster.forecast_window(self.inputs, self.missing, self._prior_now())

    def _baseline(self) -> np.ndarray:
        """Fallback without a model: minus the last revealed label (short-term reversal), else 0."""
        return -np.nan_to_num(self.latest_label)

    def predict(self, test, *batches) -> pl.DataFrame:
        _NAMES.clear()
        try:
            return self._predict(test, *batches)
        finally:
            _NAMES.clear()               # keeps no frame alive between calls

    def _predict(self, test, *batches) -> pl.DataFrame:
        self.calls += 1
        columns = self._reply_columns(batches, self.target_names)
        try:
            frames = [_to_polars(b) for b in batches]
            test = _to_polars(test)
            date_id = self._date_of(test, frames)
            first, last = int(self.tail.dates[0]), int(self.tail.dates[-1])
            if not first <= date_id <= last + MAX_SKIP:
                raise ValueError(f"date_id {date_id} is outside the served history "
                                 f"{first}..{last + MAX_SKIP}; state left unchanged")
            published = np.full(len(self.targets), np.nan)
            for lag, frame in zip(range(1, len(frames) + 1), frames):
                self._labels_of(frame, lag, date_id, published)
            self._advance(date_id, self._prices_of(test, date_id), published)
            have = np.isfinite(published)
            self.latest_label[have] = published[have]
            values = self._forecast()
            if not np.isfinite(values).all():
                raise ValueError("non-finite forecast")
            self.last_good = values
        except Exception as exc:  # a served day must never raise
            self.fallbacks += 1
            log.warning("day %s: %s; falling back to %s", self.calls, exc,
                        "the baseline" if self.last_good is None else "the last good forecast")
            values = self._baseline() if self.last_good is None else self.last_good
        return self._reply(values, columns)

    def _date_of(self, test: pl.DataFrame, frames: list[pl.DataFrame]) -> int:
        for frame in [test, *frames]:
            if frame.height and DATE in _names(frame):
                ids = [v for v in map(_to_float, frame.get_column(DATE).to_list()) if np.isfinite(v)]
                if ids:
                    return int(ids[0])
        return int(self.tail.dates[-1]) + 1              # no date given: take the next day

    @staticmethod
    def _reply_columns(batches, default: list[str]) -> list[str]:
        """The batches' target columns in their order (each once); `default` if none."""
        layout = []
        for batch in batches:
            try:
                layout.append(_names(batch) if isinstance(batch, pl.DataFrame)
                              else tuple(str(c) for c in getattr(batch, "columns", [])))
            except Exception:     # a broken frame names no columns
                layout.append(())

        def build() -> list[str]:
            columns = dict.fromkeys(str(c) for names in layout for c in names)
            columns.pop(DATE, None)
            columns.pop(LABEL_DATE, None)
            return list(columns)
        return _layout(("reply", *layout), build) or list(default)

    def _reply(self, values: np.ndarray, columns: list[str]) -> pl.DataFrame:
        """One row: each column's forecast (0 for a column that is not a known target)."""
        at = _layout(("reply_at", tuple(columns)),
                     lambda: np.array([self.position.get(c, -1) for c in columns], dtype=np.int64), self.layouts)
        return _one_row(np.append(values, 0.0)[at], columns)


def _one_row(row: np.ndarray, columns: list[str]) -> pl.DataFrame:
    """The reply frame: finite values, never a constant row (the metric is undefined on one)."""
    row = np.where(np.isfinite(row), row, 0.0)
    if row.size > 1 and np.ptp(row) == 0:
        row = row + 1e-9 * np.arange(row.size)
    return pl.DataFrame({"value": row}).transpose(column_names=columns)   # one row, fast


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
            return _one_row(np.zeros(len(columns)), columns)
    return _SERVER.predict(test, *batches)
