"""Split the labelled days once, by date, with an embargo: train, validation, holdout.

Every stage after this one reads `splits.json` instead of recomputing the split.

usage: python stages/split.py --data artifacts/data --out artifacts/splits
"""
import numpy as np

from spreadcast import cli, config
from spreadcast.data.ingest import load_ingested
from spreadcast.features.splits import make_splits
from spreadcast.io import atomic_dir


def main() -> None:
    p = cli.parser(__doc__)
    p.add_input("--data")
    p.add_output("--out")
    args = p.parse_args()
    cfg = config.load("windows", args.params)
    data = load_ingested(args.data, prices=False)
    splits = make_splits(np.isfinite(data.labels).any(axis=1), cfg, data.max_lag)
    with atomic_dir(args.out) as tmp:
        splits.save(tmp, data.date_ids, history=cfg.history, val_days=cfg.val_days,
                    holdout_days=cfg.holdout_days, embargo=cfg.embargo)
    summary = splits.to_dict(data.date_ids)
    print("split: " + ", ".join(f"{name} {s['rows']} days ({s['date_ids'][0]}..{s['date_ids'][1]})"
                                for name, s in summary.items()) + f"; embargo {cfg.embargo}")


if __name__ == "__main__":
    cli.run("split", main)
