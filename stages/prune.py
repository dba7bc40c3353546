"""Derive the pruned feature list of one lag head from its trained feature gates.

usage: python stages/prune.py --lag K --tensors artifacts/tensors --train artifacts/train/lagK \
           --heads artifacts/train --out artifacts/prune/lagK

With `prune.pool_lags`, each feature's score is the mean of its scores in every lag head under
--heads (`lag1`, `lag2`, ... for the lags of `data.lags`), so the heads agree on the inputs
that matter to them all; otherwise the head's own scores are used.
"""
from pathlib import Path

import numpy as np
import polars as pl

from spreadcast import cli, config
from spreadcast.features import windows
from spreadcast.io import atomic_dir, write_json
from spreadcast.model import checkpoint
from spreadcast.model.net import SpreadTransformer
from spreadcast.training.linear import saliency, validation_scorer
from spreadcast.training.prune import best_count, count_by_validation, select


def main() -> None:
    p = cli.parser(__doc__)
    p.add_argument("--lag", type=int, required=True)
    p.add_input("--tensors")
    p.add_input("--train", help="this lag's trained head")
    p.add_input("--heads", help="the folder of every trained head (lagK inside)")
    p.add_output("--out")
    args = p.parse_args()
    cfg = config.load("prune", args.params)
    model, meta = load_head(Path(args.train))
    if cfg.pool_lags:
        lags = config.load("data", args.params).lags
        heads = [load_head(Path(args.heads) / f"lag{lag}") for lag in lags]
        scores = np.mean([aligned(feature_scores(m, cfg.score), m_meta["features"], meta["features"],
                                  Path(args.heads) / f"lag{lag}") for lag, (m, m_meta) in zip(lags, heads)], axis=0)
    else:
        scores = feature_scores(model, cfg.score)
    count, tried = None, {}
    if cfg.policy == "validate":
        tensors = windows.load(args.tensors)
        # with pool_lags, one count for every head: its mean validation Sharpe over the heads
        judges = list(zip(lags, heads)) if cfg.pool_lags else [(args.lag, (model, meta))]
        per_head = []
        for lag, (m, m_meta) in judges:
            data = windows.head_data(tensors, lag, m_meta["features"])
            per_head.append(count_by_validation(aligned(scores, meta["features"], m_meta["features"], Path(args.train)),
                                                m_meta["features"], cfg.candidates,
                                                validation_scorer(m, data, cfg.ridge_alpha))[1])
        tried = {k: float(np.mean([t[k] for t in per_head])) for k in per_head[0]}
        count = best_count(tried)
        print(f"prune lag {args.lag}: validation Sharpe of the re-solved linear path by features kept"
              f"{' (mean over the lag heads)' if cfg.pool_lags else ''}: "
              + ", ".join(f"{k} {v:+.3f}" for k, v in tried.items()), flush=True)
    kept, report = select(scores, meta["features"], cfg, count)
    with atomic_dir(args.out) as tmp:
        write_json(tmp / "registry.json", {"lag": args.lag, "policy": cfg.policy, "score": cfg.score,
                                           "validation_sharpe_by_count": {str(k): v for k, v in tried.items()},
                                           "features": kept})
        write_json(tmp / "report.json", report)
        # for `dvc plots show`, by rank of the score pruning used (pooled over lags or not): that
        # score, kept and dropped as two series (NaN outside each: a chart skips it, an empty cell
        # would be drawn at 0), and this lag's
        # own score and plain gate value, which differ between lags even when the ranking is pooled
        order = sorted(report, key=lambda r: r["rank"])
        index = {n: j for j, n in enumerate(meta["features"])}
        own = feature_scores(model, cfg.score)
        gate = model.gate.values().detach().double().numpy()
        pl.DataFrame({"rank": [r["rank"] for r in order],
                      "kept": [r["score"] if r["kept"] else None for r in order],
                      "dropped": [None if r["kept"] else r["score"] for r in order],
                      "this_lag_score": [float(own[index[r["feature"]]]) for r in order],
                      "gate": [float(gate[index[r["feature"]]]) for r in order]},
                     schema={"rank": pl.Int64, "kept": pl.Float64, "dropped": pl.Float64,
                             "this_lag_score": pl.Float64, "gate": pl.Float64}).write_csv(tmp / "gates.csv", null_value="NaN")
    print(f"prune lag {args.lag}: {len(kept)} of {len(meta['features'])} features kept "
          f"({cfg.policy} by {cfg.score}{', pooled over lags' if cfg.pool_lags else ''})")


def load_head(folder: Path) -> tuple[SpreadTransformer, dict]:
    state, meta = checkpoint.load(folder / "best")
    model = checkpoint.build_model(meta)
    model.load_state_dict(state["model"])
    return model, meta


def feature_scores(model: SpreadTransformer, score: str) -> np.ndarray:
    """Saliency scaled to a largest value of 1, or the gates as they are."""
    if score == "gate":
        return model.gate.values().detach().double().numpy()
    values = saliency(model).double().numpy()
    return values / max(values.max(), 1e-12)


def aligned(scores: np.ndarray, names: list[str], wanted: list[str], where: Path) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in wanted if n not in index]
    if missing:
        raise config.ConfigError(f"{where}: head has no feature {missing[0]!r}; "
                                 f"prune.pool_lags needs every head trained on the same features")
    return scores[[index[n] for n in wanted]]


if __name__ == "__main__":
    cli.run("prune", main)
