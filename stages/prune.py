"""Derive the pruned feature list of one lag head from its trained feature gates.

usage: python stages/prune.py --lag K --train artifacts/train/lagK --out artifacts/prune/lagK
"""
from pathlib import Path

import polars as pl
import torch

from spreadcast import cli, config
from spreadcast.io import atomic_dir, write_json
from spreadcast.model import checkpoint
from spreadcast.training.prune import select


def main() -> None:
    p = cli.parser(__doc__)
    p.add_argument("--lag", type=int, required=True)
    p.add_argument("--train", required=True)
    p.add_output("--out")
    args = p.parse_args()
    cfg = config.load("prune", args.params)
    state, meta = checkpoint.load(Path(args.train) / "best")
    gates = torch.sigmoid(state["model"]["gate.logit"]).numpy()
    kept, report = select(gates, meta["features"], cfg)
    with atomic_dir(args.out) as tmp:
        write_json(tmp / "registry.json", {"lag": args.lag, "policy": cfg.policy, "features": kept})
        write_json(tmp / "report.json", report)
        # sorted gate magnitudes as two series, kept and dropped, for `dvc plots show`
        pl.DataFrame({"rank": [r["rank"] for r in report],
                      "kept": [r["gate"] if r["kept"] else 0.0 for r in report],
                      "dropped": [0.0 if r["kept"] else r["gate"] for r in report]}).write_csv(tmp / "gates.csv")
    print(f"prune lag {args.lag}: {len(kept)} of {len(meta['features'])} features kept ({cfg.policy})")


if __name__ == "__main__":
    cli.run("prune", main)
