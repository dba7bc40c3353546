"""Fit scaling statistics on the training fold and persist them with the feature names.

usage: python stages/scale.py --data artifacts/data --splits artifacts/splits --features artifacts/features --out artifacts/scaling
"""
from pathlib import Path

import polars as pl

from spreadcast import cli, config
from spreadcast.data.ingest import load_ingested
from spreadcast.features import scaling
from spreadcast.features import splits as date_splits
from spreadcast.io import atomic_dir, read_json, write_json


def main() -> None:
    p = cli.parser(__doc__)
    p.add_input("--data")
    p.add_input("--splits")
    p.add_input("--features")
    p.add_output("--out")
    args = p.parse_args()
    cfg = config.load("scale", args.params)

    data = load_ingested(args.data)
    names = read_json(Path(args.features) / "registry.json")["features"]
    matrix = pl.read_parquet(Path(args.features) / "features.parquet").select(names).to_numpy()
    splits = date_splits.load(args.splits, data.date_ids)
    scaler = scaling.fit(matrix[splits.train], names, data.labels[splits.train],
                         [t.name for t in data.targets], cfg)
    with atomic_dir(args.out) as tmp:
        write_json(tmp / "scaling.json", scaler.to_dict())
    print(f"scale: {cfg.method} statistics of {len(names)} features and {len(data.targets)} targets "
          f"from {splits.train.size} training days")


if __name__ == "__main__":
    cli.run("scale", main)
