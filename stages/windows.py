"""Export the scaled feature matrix, labels, masks, date ids and the date splits.

usage: python stages/windows.py --data artifacts/data --features artifacts/features \
           --scaling artifacts/scaling --splits artifacts/splits --out artifacts/tensors
"""
from pathlib import Path


from spreadcast import cli, config
from spreadcast.data.ingest import load_ingested
from spreadcast.features import scaling, windows
from spreadcast.features import splits as date_splits
from spreadcast.io import atomic_dir, read_json, write_json


def main() -> None:
    p = cli.parser(__doc__)
    for name in ("--data", "--splits", "--features", "--scaling"):
        p.add_input(name)
    p.add_output("--out")
    args = p.parse_args()
    cfg = config.load("windows", args.params)

    data = load_ingested(args.data, prices=False)
    scaler = scaling.Scaler.from_dict(read_json(Path(args.scaling) / "scaling.json"))
    splits = date_splits.load(args.splits, data.date_ids)
    scaled, missing = scaler.transform_parquet(Path(args.features) / "features.parquet")
    registry = read_json(Path(args.features) / "registry.json")
    with atomic_dir(args.out) as tmp:
        windows.export(tmp, features=scaled, missing=missing, labels=data.labels / scaler.target_scale,
                       raw_labels=data.labels, date_ids=data.date_ids, splits=splits)
        write_json(tmp / "meta.json", {
            "features": scaler.features,
            "model_inputs": registry["model_inputs"],
            "fold_inputs": registry["fold_inputs"],
            "level_inputs": registry.get("level_inputs", []),
            "own": registry["own"],
            "targets": [t.to_dict() for t in data.targets],
            "target_scale": scaler.target_scale.tolist(),
            "history": cfg.history, "embargo": cfg.embargo,
            "lags": sorted({t.lag for t in data.targets}),
            "splits": splits.to_dict(data.date_ids),
            "shape": {"dates": int(scaled.shape[0]), "features": int(scaled.shape[1]),
                      "targets": len(data.targets)},
        })
    print(f"windows: {scaled.shape[0]} dates x {scaled.shape[1]} features, {len(data.targets)} targets; "
          f"train {splits.train.size}, val {splits.val.size}, holdout {splits.holdout.size} days, "
          f"embargo {cfg.embargo}")


if __name__ == "__main__":
    cli.run("windows", main)
