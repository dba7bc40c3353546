"""Read and validate a dataset folder in the competition's layout.

    folder/train.csv                 date_id + feature columns
    folder/train_labels.csv          optional; date_id + targets (recomputed when absent)
    folder/target_pairs.csv          target, lag, pair
    folder/test.csv                  optional; date_id + feature columns + is_scored
    folder/lagged_test_labels/test_labels_lag_{k}.csv   date_id, lag-k targets, label_date_id

Nothing here assumes a number or naming of columns or targets. Every problem is a
one-line `DataError` naming the file and the column, row or key at fault.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from spreadcast.data.targets import DataError, Target, parse_pair, publication_date

DATE = "date_id"
LABEL_DATE = "label_date_id"
SCORED = "is_scored"


@dataclass
class Dataset:
    folder: Path
    train: pl.DataFrame
    features: list[str]
    targets: list[Target]
    train_labels: pl.DataFrame | None = None
    test: pl.DataFrame | None = None
    lagged: dict[int, pl.DataFrame] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def lags(self) -> list[int]:
        return sorted({t.lag for t in self.targets})

    def targets_of(self, lag: int) -> list[Target]:
        return [t for t in self.targets if t.lag == lag]


def _read_raw(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        df = pl.read_csv(path, infer_schema_length=0, null_values=[""])
    except Exception as exc:  # polars raises several types for unreadable CSVs
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    if df.width == 0:
        raise DataError(f"{path}: no columns")
    duplicated = [c for c in df.columns if c.endswith("_duplicated_0")]
    if duplicated:
        raise DataError(f"{path}: duplicate column {duplicated[0].removesuffix('_duplicated_0')!r}")
    return df


def _require_columns(df: pl.DataFrame, path: Path, columns: list[str]) -> None:
    for c in columns:
        if c not in df.columns:
            raise DataError(f"{path}: missing column {c!r}")


def _date_ids(df: pl.DataFrame, path: Path, column: str = DATE) -> pl.Series:
    raw = df[column]
    ids = raw.cast(pl.Int64, strict=False)
    bad = ids.is_null()
    if bad.any():
        row = int(bad.arg_max())
        raise DataError(f"{path}: column {column!r}, row {row + 2}: not an integer date ({raw[row]!r})")
    diffs = ids.diff().drop_nulls()
    if (diffs <= 0).any():
        row = int((diffs <= 0).arg_max()) + 1
        kind = "duplicate" if diffs[row - 1] == 0 else "unsorted"
        raise DataError(f"{path}: {kind} {column} {ids[row]} at row {row + 2}")
    return ids


def _numeric(df: pl.DataFrame, path: Path, columns: list[str], dates: pl.Series) -> pl.DataFrame:
    """Cast text columns to Float64, failing on the first non-numeric or non-finite cell."""
    out = []
    for c in columns:
        raw = df[c]
        num = raw.cast(pl.Float64, strict=False)
        bad = (num.is_null() & raw.is_not_null()) | ~num.is_finite().fill_null(True)
        if bad.any():
            row = int(bad.arg_max())
            raise DataError(f"{path}: column {c!r}, date_id {dates[row]}: "
                            f"non-numeric or non-finite value {raw[row]!r}")
        out.append(num.alias(c))
    return pl.DataFrame([dates.alias(DATE), *out])


def _bools(df: pl.DataFrame, path: Path, column: str, dates: pl.Series) -> pl.Series:
    raw = df[column].str.to_lowercase()
    mapped = raw.replace_strict({"true": True, "false": False, "1": True, "0": False},
                                default=None, return_dtype=pl.Boolean)
    bad = mapped.is_null()
    if bad.any():
        row = int(bad.arg_max())
        raise DataError(f"{path}: column {column!r}, date_id {dates[row]}: "
                        f"expected true/false, got {df[column][row]!r}")
    return mapped.alias(column)


def read_target_pairs(path: Path, columns: list[str]) -> list[Target]:
    df = _read_raw(path)
    _require_columns(df, path, ["target", "lag", "pair"])
    known = set(columns)
    targets, seen = [], set()
    for row, (name, lag, pair) in enumerate(df.select("target", "lag", "pair").iter_rows(), start=2):
        where = f"{path}: row {row} ({name})"
        if not name:
            raise DataError(f"{path}: row {row}: empty target name")
        if name in seen:
            raise DataError(f"{where}: duplicate target name")
        seen.add(name)
        try:
            lag_value = int(lag)
        except (TypeError, ValueError):
            raise DataError(f"{where}: lag {lag!r} is not an integer") from None
        if not 1 <= lag_value <= 4:
            raise DataError(f"{where}: lag {lag_value} is outside 1..4")
        a, b = parse_pair(pair, where)
        for col in (a, b):
            if col is not None and col not in known:
                raise DataError(f"{where}: pair names unknown column {col!r}")
        targets.append(Target(name=name, lag=lag_value, a=a, b=b))
    if not targets:
        raise DataError(f"{path}: no targets")
    return targets


def _check_prices_positive(df: pl.DataFrame, path: Path, columns: set[str]) -> None:
    for c in sorted(columns):
        col = df[c]
        bad = (col <= 0).fill_null(False)
        if bad.any():
            row = int(bad.arg_max())
            raise DataError(f"{path}: column {c!r}, date_id {df[DATE][row]}: price {col[row]} "
                            "is not positive, but a target takes its log")


def find_gaps(df: pl.DataFrame, path: Path, columns: list[str], min_days: int = 10) -> list[str]:
    """Warnings for runs of at least `min_days` rows without values inside a column's history.

    A market closed for weeks is not an error: its features are masked over the gap (and their
    windows see the mask). Columns sharing the same gap are named together.
    """
    values = df.select(columns).to_numpy()
    dates = df[DATE].to_numpy()
    gaps: dict[tuple[int, int], list[str]] = {}
    for j, name in enumerate(columns):
        have = ~np.isnan(values[:, j])
        seen = np.flatnonzero(have)
        if seen.size == 0:
            continue
        inner = ~have[seen[0]:seen[-1] + 1]
        edges = np.diff(np.concatenate(([0], inner.view(np.int8), [0])))
        for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            if stop - start >= min_days:
                gaps.setdefault((int(dates[seen[0] + start]), int(dates[seen[0] + stop - 1])), []).append(name)
    out = []
    for (first, last), names in sorted(gaps.items()):
        shown = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
        out.append(f"{path}: {len(names)} column(s) ({shown}) have no values for date_id {first}..{last}; "
                   "their features are masked there")
    return out


def read_lagged(folder: Path, lag: int, targets: list[Target]) -> pl.DataFrame:
    path = folder / f"test_labels_lag_{lag}.csv"
    df = _read_raw(path)
    names = [t.name for t in targets]
    _require_columns(df, path, [DATE, *names, LABEL_DATE])
    dates = _date_ids(df, path)
    label_dates = df[LABEL_DATE].cast(pl.Int64, strict=False)
    if label_dates.is_null().any():
        row = int(label_dates.is_null().arg_max())
        raise DataError(f"{path}: column {LABEL_DATE!r}, date_id {dates[row]}: not an integer")
    wrong = publication_date(label_dates, lag) != dates
    if wrong.any():
        row = int(wrong.arg_max())
        raise DataError(f"{path}: date_id {dates[row]}: label_date_id {label_dates[row]} "
                        f"should be date_id - {lag} - 1 = {dates[row] - lag - 1}")
    values = _numeric(df, path, names, dates)
    return values.with_columns(label_dates.alias(LABEL_DATE))


def read_dataset(folder: str | Path, lags: list[int] | None = None) -> Dataset:
    """Read and validate every file of a dataset folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: dataset folder not found")
    train_path = folder / "train.csv"
    raw = _read_raw(train_path)
    _require_columns(raw, train_path, [DATE])
    features = [c for c in raw.columns if c != DATE]
    if not features:
        raise DataError(f"{train_path}: no feature columns besides {DATE!r}")
    dates = _date_ids(raw, train_path)
    train = _numeric(raw, train_path, features, dates)

    targets = read_target_pairs(folder / "target_pairs.csv", features)
    found = sorted({t.lag for t in targets})
    if lags is not None and found != sorted(lags):
        raise DataError(f"{folder / 'target_pairs.csv'}: lags {found} differ from "
                        f"params data.lags {sorted(lags)}")
    price_columns = {c for t in targets for c in t.columns}
    _check_prices_positive(train, train_path, price_columns)
    ds = Dataset(folder=folder, train=train, features=features, targets=targets,
                 warnings=find_gaps(train, train_path, features))

    labels_path = folder / "train_labels.csv"
    if labels_path.exists():
        raw_labels = _read_raw(labels_path)
        names = [t.name for t in targets]
        _require_columns(raw_labels, labels_path, [DATE, *names])
        extra = [c for c in raw_labels.columns if c not in names and c != DATE]
        if extra:
            ds.warnings.append(f"{labels_path}: ignoring {len(extra)} unknown columns ({extra[0]!r}, ...)")
        ds.train_labels = _numeric(raw_labels, labels_path, names, _date_ids(raw_labels, labels_path))

    test_path = folder / "test.csv"
    if test_path.exists():
        raw_test = _read_raw(test_path)
        _require_columns(raw_test, test_path, [DATE, *features, SCORED])
        if raw_test.height == 0:
            raise DataError(f"{test_path}: no rows")
        extra = [c for c in raw_test.columns if c not in features and c not in (DATE, SCORED)]
        if extra:
            ds.warnings.append(f"{test_path}: ignoring {len(extra)} columns not in train.csv ({extra[0]!r}, ...)")
        test_dates = _date_ids(raw_test, test_path)
        test = _numeric(raw_test, test_path, features, test_dates)
        _check_prices_positive(test, test_path, price_columns)
        ds.test = test.with_columns(_bools(raw_test, test_path, SCORED, test_dates))
        lagged_folder = folder / "lagged_test_labels"
        for lag in ds.lags:
            ds.lagged[lag] = read_lagged(lagged_folder, lag, ds.targets_of(lag))
    return ds


def dense_dates(df: pl.DataFrame) -> pl.DataFrame:
    """Reindex onto every date_id from first to last; absent days become empty rows."""
    full = pl.DataFrame({DATE: np.arange(df[DATE].min(), df[DATE].max() + 1, dtype=np.int64)})
    return full.join(df, on=DATE, how="left")
