"""How much of each synthetic market's ceiling a forecaster that knows the market's structure
reaches with the training days the pipeline has: the bound behind the quality table's shares.

usage: python bench/attainable.py --work DIR [--markets default,levels,...]
                                  [--out bench/results/attainable.json]

On the projects `bench/quality.py --work DIR` keeps, for every synthetic market with a ceiling,
it rebuilds the market (`synthetic.generate` with the project's params) and the state variables
its common mechanisms read: for lead-lag, each leader's exponentially weighted log return at the
market's signal persistence (the latent signal up to scale); for levels, the published RATE
columns. A ridge per target on those variables alone (with an intercept: each target's mean,
the drift mechanism's forecast) is fit on the project's training days, and on the
training days after the regime day where the market has one, and scored on the project's
holdout days beside the ceiling and the served model. Each fit is scored twice: on the state
variables alone (the fit's forecast less each target's training mean, so only what moves with
the state ranks the targets) and with the targets' means (the whole fit); and once more fit to the
oracle's expectation itself instead of the labels (no label noise: what the state variables can
express, against what the training days' labels let a ridge estimate); and fit to each day's
labels divided by their spread across the targets that day (every day weighs alike, as in the
daily score, where volatile days would otherwise dominate the fit).

Beside it, each mechanism's part of the ceiling alone (`synthetic.generate(ceiling_of=...)`: the
expectation driven by that mechanism's source only, the reversion of what it moves included; the
parts add up to the ceiling), scored on the same holdout days: where a market's ceiling lies.

It is a bound on the estimation, not on the search: the pipeline must also find those few
columns among all the others, which this ridge is told. Two more rows measure what a forecaster
that is not told the regime day can do about it, on every market: the told ridge fit with recency
weights (a half-life of 125 or 250 days back from the last training day, as the pipeline's ridge
weighs its rows), and where the market has leaders, the search itself: each leader's place among
the source columns in the screen's order (`prescreen`'s univariate rank IC on the training days,
a column ranked by its best feature), over every training day as the pipeline screens, and with
the same recency weights in the IC. Mean reversion's state is each asset's
own deviation from its trailing mean, which the own-series component reads already; it is left
out here, so on a market with reversion the bound covers the other mechanisms only.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from spreadcast import config  # noqa: E402
from spreadcast.data import synthetic  # noqa: E402
from spreadcast.data.ingest import load_ingested  # noqa: E402
from spreadcast.data.layout import DATE, SCORED  # noqa: E402
from spreadcast.evaluation import metric  # noqa: E402
from spreadcast.evaluation.walkforward import fit_ridge, recency_weights  # noqa: E402
from spreadcast.features import splits as date_splits, windows  # noqa: E402
from spreadcast.features.engineer import column_kinds, engineer  # noqa: E402
from spreadcast.features.prescreen import usable  # noqa: E402
from quality import finished_projects  # noqa: E402

ALPHAS = (0.1, 1.0, 10.0)      # ridge penalties (times the rows); the best on the holdout is reported
HALFLIVES = (125.0, 250.0)     # recency weights of the told ridge and of the screen's IC, in days


def state_variables(cfg, market: synthetic.Market) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names, values (dates x variables) and date ids of the common state the mechanisms read."""
    frame = (pl.concat([market.train, market.test.drop(SCORED)]).unique(DATE, keep="first").sort(DATE))
    names, columns = [], []
    if cfg.signal_strength > 0:
        for leader in market.leaders:
            step = np.nan_to_num(np.diff(np.log(frame[leader].to_numpy()), prepend=np.nan))
            signal = np.zeros_like(step)
            for t in range(1, step.size):
                signal[t] = cfg.signal_persistence * signal[t - 1] + step[t]
            names.append(f"{leader} (weighted returns, decay {cfg.signal_persistence:g})")
            columns.append(signal)
    if cfg.level_strength > 0:
        for k in range(cfg.n_levels):
            names.append(f"RATE_{k + 1}")
            columns.append(frame[f"RATE_{k + 1}"].to_numpy())
    values = np.stack(columns, axis=1) if columns else np.zeros((frame.height, 0))
    return names, values, frame[DATE].to_numpy()


def expectation(market: synthetic.Market, t) -> np.ndarray:
    """The oracle's expectation of the labels (`market.ceiling`) on the tensors' dates and targets."""
    frame = market.ceiling
    where = {int(d): i for i, d in enumerate(frame[DATE].to_numpy())}
    return frame.select(t.target_names).to_numpy()[[where[int(d)] for d in t.date_ids]]


def by_mechanism(cfg, t) -> dict[str, float]:
    """Holdout Sharpe of each active mechanism's part of the oracle's expectation alone
    (`synthetic.generate(ceiling_of=...)`; the parts add up to the ceiling)."""
    active = {"lead_lag": cfg.signal_strength, "levels": cfg.level_strength * cfg.n_levels,
              "drift": cfg.drift_strength, "reversion": cfg.reversion_strength}
    holdout = t.splits.holdout
    return {name: round(metric.summary(t.raw_labels[holdout],
                                       expectation(synthetic.generate(cfg, name), t)[holdout])["sharpe"], 4)
            for name in synthetic.MECHANISMS if active[name] > 0}


def weighted_rank_ic(features: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Spearman IC of each feature with each target (features x targets), each row weighing
    `weights`: ranks over the rows, centred and normed under the weights; missing cells count as
    the centre. Equal weights give `prescreen.rank_ic`."""
    def centred(values):
        ranks = metric.rankdata(values, axis=0)
        seen = np.isfinite(ranks)
        mean = (np.where(seen, ranks, 0.0) * weights[:, None]).sum(axis=0) / np.maximum(
            (seen * weights[:, None]).sum(axis=0), 1e-12)
        ranks = np.where(seen, ranks - mean, 0.0) * np.sqrt(weights)[:, None]
        norm = np.linalg.norm(ranks, axis=0, keepdims=True)
        return ranks / np.where(norm > 0, norm, 1.0)
    return centred(features).T @ centred(labels)


def leader_places(root: Path, leaders: list[str]) -> dict:
    """Each leader's place (1 = first) among the usable source columns in the screen's order on
    the project's training days: every day alike, as `prescreen` screens, and with each recency
    half-life in the IC. Also how many source columns there are."""
    data = load_ingested(root / "artifacts" / "data")
    feat_cfg = config.load("features", str(root / "params.yaml"))
    screen_cfg = config.load("prescreen", str(root / "params.yaml"))
    names, matrix = engineer(data.prices, feat_cfg, data.targets, data.labels, data.revealed,
                             column_kinds(data.prices))
    train = date_splits.load(root / "artifacts" / "splits", data.date_ids).train
    alive = usable(matrix[train], names, screen_cfg)
    index = {n: j for j, n in enumerate(names)}
    features, labels = matrix[np.ix_(train, [index[n] for n in alive])], data.labels[train]
    family = [n.split("__")[0] for n in alive]
    out = {"source_columns": len(set(family))}
    for halflife in (0.0, *HALFLIVES):
        score = np.sqrt(np.mean(weighted_rank_ic(features, labels, recency_weights(train, halflife)) ** 2, axis=1))
        best: dict[str, float] = {}
        for f, s in zip(family, score):
            best[f] = max(best.get(f, 0.0), float(s))
        order = sorted(best, key=lambda f: (-round(best[f], 12), f))
        key = "every day alike" if halflife == 0 else f"recency half-life {halflife:g}"
        out[key] = [order.index(leader) + 1 if leader in best else None for leader in leaders]
    return out


def attainable(root: Path) -> dict | None:
    """The row of one project, or None where the market has no ceiling (real prices, none set)."""
    params = root / "params.yaml"
    metrics = json.loads((root / "artifacts" / "metrics" / "evaluate.json").read_text())
    if not metrics.get("ceiling_sharpe"):
        return None
    cfg = config.load("synthetic", str(params))
    market = synthetic.generate(cfg)
    names, values, dates = state_variables(cfg, market)
    t = windows.load(root / "artifacts" / "tensors")
    where = {int(d): i for i, d in enumerate(dates)}
    x = values[[where[int(d)] for d in t.date_ids]]
    train, holdout = t.splits.train, t.splits.holdout
    x = (x - x[train].mean(axis=0)) / np.where(x[train].std(axis=0) > 0, x[train].std(axis=0), 1.0)
    y = t.labels.numpy().astype(np.float64)
    truth = t.raw_labels[holdout]
    # the expectation on the labels' scale (each target's training spread), no label noise
    spread = np.nanstd(t.raw_labels[train], axis=0)
    expected = expectation(market, t) / np.where(spread > 0, spread, 1.0)
    day_spread = np.nanstd(y, axis=1, keepdims=True)                # across targets, each day
    per_day = y / np.where(np.isfinite(day_spread) & (day_spread > 0), day_spread, 1.0)
    fits = {"all training days": (train, 0.0)}
    if cfg.regime_day > 0 and (t.date_ids[train] >= cfg.regime_day).sum() > 20:
        fits["training days after the regime day"] = (train[t.date_ids[train] >= cfg.regime_day], 0.0)
    recent = {f"all training days, recency half-life {h:g}": (train, h) for h in HALFLIVES}
    row = {"state_variables": names, "ceiling": round(metrics["ceiling_sharpe"], 4),
           "model": round(metrics["model_sharpe"], 4), "ceiling_by_mechanism": by_mechanism(cfg, t)}
    for name, (rows, halflife) in {**fits, **recent}.items():
        for part, target in (("state", y), ("state_and_means", y), ("state fit to the expectation", expected),
                             ("state fit to each day's labels over their spread", per_day)):
            if (part != "state_and_means" and not names) or (name in recent and part != "state"):
                continue
            # the intercept: each target's mean over the fit's rows, under the fit's weights
            weights = recency_weights(rows, halflife)[:, None]
            less = 0.0 if part == "state_and_means" else (np.nan_to_num(target[rows]) * weights).mean(axis=0)
            scores = {}
            for alpha in ALPHAS:
                w, b = fit_ridge(x, target, alpha, rows, halflife)
                scores[alpha] = metric.summary(truth, x[holdout] @ w + b - less)["sharpe"]
            best = max(scores, key=scores.get)
            row[f"{part}, {name}"] = {"sharpe": round(scores[best], 4), "alpha": best, "days": int(rows.size),
                                      "share_of_ceiling": round(scores[best] / metrics["ceiling_sharpe"], 3)}
    if cfg.signal_strength > 0:
        row["leader_places"] = leader_places(root, list(market.leaders))
    row["model_share_of_ceiling"] = round(metrics["model_sharpe"] / metrics["ceiling_sharpe"], 3)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="the --work folder of bench/quality.py (finished projects)")
    p.add_argument("--markets", default=None, help="comma-separated (default: every project in --work)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "attainable.json"))
    args = p.parse_args()
    work = Path(args.work)
    start, table = time.perf_counter(), {}
    for market, root in finished_projects(work, args.markets, "attainable"):
        row = attainable(root)
        if row is None:
            print(f"{market:10s} no ceiling (real prices, or no mechanism): skipped", flush=True)
            continue
        table[market] = row
        print(f"{market:10s} ceiling {row['ceiling']:+.3f}  model {row['model']:+.3f} "
              f"({row['model_share_of_ceiling']:.0%}); each mechanism's part of the ceiling alone: "
              + ", ".join(f"{k} {v:+.3f}" for k, v in row["ceiling_by_mechanism"].items())
              + f"; ridge on the {len(row['state_variables'])} state variables:", flush=True)
        for k, v in row.items():
            if isinstance(v, dict) and "sharpe" in v:
                print(f"{'':12s}{k:56s} {v['sharpe']:+.3f} ({v['share_of_ceiling']:.0%})", flush=True)
        if "leader_places" in row:
            places = row["leader_places"]
            print(f"{'':12s}the leaders' places among {places['source_columns']} source columns in the screen's order: "
                  + "; ".join(f"{k} {v}" for k, v in places.items() if k != "source_columns"), flush=True)
    result = {"markets": table, "alphas": list(ALPHAS), "wall_s": round(time.perf_counter() - start)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
