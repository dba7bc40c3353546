"""Holdout report: the competition metric overall, per lag and over rolling windows,
for the model, the baselines (ridge, constant rank) and (on a synthetic market) the oracle's ceiling.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from spreadcast.data.layout import DATE
from spreadcast.evaluation import metric
from spreadcast.io import read_json


def oracle_for(oracle: Path, registry: dict) -> Path | None:
    """The oracle folder if it describes the dataset that was ingested, else None."""
    meta_path = oracle / "meta.json"
    if not meta_path.is_file():
        return None
    theirs = read_json(meta_path).get("dataset_fingerprint", {})
    ours = registry.get("fingerprint", {})
    same = all(ours.get(name) == digest for name, digest in theirs.items()) and bool(theirs)
    return oracle if same else None


def has_signal(path: Path) -> bool:
    """Whether an oracle's expectations vary across targets on some day (the null market's
    are all zero, and a ceiling of nothing is no yardstick)."""
    values = pl.read_parquet(path).drop(DATE).to_numpy()
    return bool(np.nanmax(np.nanstd(values, axis=1), initial=0.0) > 0)


def oracle_table(path: Path, date_ids: np.ndarray, targets: list[str]) -> np.ndarray:
    """An oracle parquet (date_id + targets) aligned to `date_ids`; NaN where absent."""
    table = pl.DataFrame({DATE: date_ids.astype(np.int64)}).join(pl.read_parquet(path), on=DATE, how="left")
    return table.select(targets).to_numpy().astype(np.float64)


def rolling(values: np.ndarray, window: int) -> np.ndarray:
    out = np.full(values.shape, np.nan)
    for i in range(window - 1, len(values)):
        chunk = values[i - window + 1:i + 1]
        chunk = chunk[np.isfinite(chunk)]
        if chunk.size:
            out[i] = chunk.mean()
    return out


def ranking_quality(labels: np.ndarray, preds: np.ndarray, top: float = 0.1) -> dict:
    """Per-day top-k precision (k = `top` of the labelled targets) and the Q5 - Q1 label spread
    of the prediction quintiles, averaged over days with at least 5 labels."""
    precision, spread = [], []
    for y, p in zip(labels, preds):
        have = np.isfinite(y) & np.isfinite(p)
        n = int(have.sum())
        if n < 5:
            continue
        y, p = y[have], p[have]
        k = max(1, int(round(top * n)))
        best_pred, best_true = np.argsort(-p, kind="stable")[:k], np.argsort(-y, kind="stable")[:k]
        precision.append(len(set(best_pred) & set(best_true)) / k)
        order = np.argsort(p, kind="stable")
        q = max(1, n // 5)
        spread.append(y[order[-q:]].mean() - y[order[:q]].mean())
    return {"top_k_precision": float(np.mean(precision)) if precision else None,
            "top_k_share": top,
            "q5_q1_spread": float(np.mean(spread)) if spread else None}


def compare(labels: np.ndarray, predictions: dict[str, np.ndarray], lags: np.ndarray,
            date_ids: np.ndarray, window: int) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    """Metrics per predictor, a daily IC table (with rolling means) and a per-lag table (one
    row per lag and predictor, ordered by lag, for a bar chart)."""
    metrics: dict = {}
    daily = {DATE: date_ids}
    per_lag: dict[str, list] = {"bar": [], "lag": [], "forecast": [], "sharpe": []}   # long: one bar each
    for name, preds in predictions.items():
        metrics[name] = metric.summary(labels, preds)
        ic = metric.daily_rank_corr(labels, preds, strict=False)
        daily[f"{name}_ic"] = ic
        daily[f"{name}_ic_rolling"] = rolling(ic, window)
        roll = rolling(ic, window)
        metrics[name]["rolling_ic_min"] = float(np.nanmin(roll)) if np.isfinite(roll).any() else None
        metrics[name].update(ranking_quality(labels, preds))
        for k in np.unique(lags):
            cols = lags == k
            lag_metrics = metric.summary(labels[:, cols], preds[:, cols])
            lag_metrics["icir"] = lag_metrics["sharpe"]            # mean / std of the daily rank IC
            lag_metrics.update(ranking_quality(labels[:, cols], preds[:, cols]))
            metrics[name][f"lag{k}"] = lag_metrics
        for k in np.unique(lags):
            per_lag["bar"].append(f"lag {k} {name}")
            per_lag["lag"].append(int(k))
            per_lag["forecast"].append(name)
            per_lag["sharpe"].append(metrics[name][f"lag{k}"]["sharpe"])
    return metrics, pl.DataFrame(daily), pl.DataFrame(per_lag).sort("lag", maintain_order=True)


def headline(metrics: dict, val_sharpe: dict[str, float], holdout_days: int) -> dict:
    """The metrics file's flat summary: every forecast's holdout Sharpe and IC, its validation
    Sharpe, the model against the ridge and the better baseline, and the fraction of the
    oracle's ceiling where there is one."""
    summary = {"holdout_days": holdout_days,
               **{f"{name}_sharpe": m["sharpe"] for name, m in metrics.items()},
               **{f"{name}_ic": m["ic_mean"] for name, m in metrics.items()},
               "model_vs_ridge": metrics["model"]["sharpe"] - metrics["ridge"]["sharpe"],
               **{f"val_{name}_sharpe": v for name, v in val_sharpe.items()},
               "val_model_vs_ridge": val_sharpe["model"] - val_sharpe["ridge"],
               "model_vs_best_baseline": metrics["model"]["sharpe"] - max(metrics["ridge"]["sharpe"],
                                                                         metrics["const_rank"]["sharpe"])}
    if "ceiling" in metrics:
        summary["fraction_of_ceiling"] = metrics["model"]["sharpe"] / metrics["ceiling"]["sharpe"]
        summary["val_fraction_of_ceiling"] = val_sharpe["model"] / val_sharpe["ceiling"]
    return summary
