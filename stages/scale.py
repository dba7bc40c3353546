"""Fit scaling statistics on the training fold and persist them with the feature names.

usage: python stages/scale.py --data artifacts/data --features artifacts/features --out artifacts/scaling
"""
from pathlib import Path

import numpy as np
import polars as pl

from spreadcast import cli, config
from spreadcast.data.ingest import load_ingested
from spreadcast.features import scaling
from spreadcast.features.splits import make_splits
from spreadcast.io import atomic_dir, read_json, write_json


def main() -> None:
    p = cli.parser(__doc__)
    p.add_input("--data")
    p.add_input("--features")
    p.add_output("--out")
    args = p.parse_args()
    cfg = config.load("scale", args.params)
    win_cfg = config.load("windows", args.params)

    data = load_ingested(args.data)
    names = read_json(Path(args.features) / "registry.json")["features"]
    matrix = pl.read_parquet(Path(args.features) / "features.parquet").select(names).to_numpy()
    splits = make_splits(np.isfinite(data.labels).any(axis=1), win_cfg, data.max_lag)
    scaler = scaling.fit(matrix[splits.train], names, data.labels[splits.train],
                         [t.name for t in data.targets], cfg)
    with atomic_dir(args.out) as tmp:
        write_json(tmp / "scaling.json", scaler.to_dict())
    print(f"scale: {cfg.method} statistics of {len(names)} features and {len(data.targets)} targets "
          f"from {splits.train.size} training days")


if __name__ == "__main__":
    cli.run("scale", main)
