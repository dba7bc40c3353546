"""Derive the pruned feature list of one lag head from its trained feature gates.

usage: python stages/prune.py --lag K --tensors artifacts/tensors --train artifacts/train/lagK \
           --out artifacts/prune/lagK
"""
from pathlib import Path

import polars as pl

from spreadcast import cli, config
from spreadcast.io import atomic_dir, write_json
from spreadcast.model import checkpoint
from spreadcast.model.net import ModelConfig, SpreadTransformer
from spreadcast.features import windows
from spreadcast.training.linear import saliency, validation_scorer
from spreadcast.training.loop import head_data
from spreadcast.training.prune import count_by_validation, select


def main() -> None:
    p = cli.parser(__doc__)
    p.add_argument("--lag", type=int, required=True)
    p.add_argument("--tensors", required=True)
    p.add_argument("--train", required=True)
    p.add_output("--out")
    args = p.parse_args()
    cfg = config.load("prune", args.params)
    state, meta = checkpoint.load(Path(args.train) / "best")
    model = SpreadTransformer(ModelConfig(**meta["model"]))
    model.load_state_dict(state["model"])
    scores = (saliency(model) if cfg.score == "saliency" else model.gate.values()).detach().double().numpy()
    scores = scores / max(scores.max(), 1e-12) if cfg.score == "saliency" else scores
    count, tried = None, {}
    if cfg.policy == "validate":
        data = head_data(windows.load(args.tensors), args.lag, meta["features"])
        count, tried = count_by_validation(scores, meta["features"], cfg.candidates,
                                           validation_scorer(model, data, cfg.ridge_alpha))
        print(f"prune lag {args.lag}: validation Sharpe of the re-solved linear path by features kept: "
              + ", ".join(f"{k} {v:+.3f}" for k, v in tried.items()), flush=True)
    kept, report = select(scores, meta["features"], cfg, count)
    with atomic_dir(args.out) as tmp:
        write_json(tmp / "registry.json", {"lag": args.lag, "policy": cfg.policy, "score": cfg.score,
                                           "validation_sharpe_by_count": {str(k): v for k, v in tried.items()},
                                           "features": kept})
        write_json(tmp / "report.json", report)
        # sorted scores as two series, kept and dropped, for `dvc plots show`
        pl.DataFrame({"rank": [r["rank"] for r in report],
                      "kept": [r["score"] if r["kept"] else 0.0 for r in report],
                      "dropped": [0.0 if r["kept"] else r["score"] for r in report]}).write_csv(tmp / "gates.csv")
    print(f"prune lag {args.lag}: {len(kept)} of {len(meta['features'])} features kept "
          f"({cfg.policy} by {cfg.score})")


if __name__ == "__main__":
    cli.run("prune", main)
