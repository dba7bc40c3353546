"""Engineer features from published prices and screen them on the training fold.

usage: python stages/prescreen.py --data artifacts/data --splits artifacts/splits --out artifacts/features
"""
import dataclasses

import polars as pl

from spreadcast import cli, config
from spreadcast.data.ingest import load_ingested
from spreadcast.data.layout import DATE
from spreadcast.features.engineer import column_kinds, engineer
from spreadcast.features.prescreen import prescreen
from spreadcast.features import splits as date_splits
from spreadcast.io import atomic_dir, write_json


def main() -> None:
    p = cli.parser(__doc__)
    p.add_input("--data")
    p.add_input("--splits")
    p.add_output("--out")
    args = p.parse_args()
    feat_cfg = config.load("features", args.params)
    cfg = config.load("prescreen", args.params)

    data = load_ingested(args.data)
    kinds = column_kinds(data.prices)
    names, matrix = engineer(data.prices, feat_cfg, data.targets, data.labels, data.revealed, kinds)
    splits = date_splits.load(args.splits, data.date_ids)
    kept, report = prescreen(matrix[splits.train], names, data.labels[splits.train], cfg)
    print(f"prescreen: {len(names)} engineered features, {len(kept)} kept "
          f"(training fold: {splits.train.size} days)")

    index = {n: j for j, n in enumerate(names)}
    with atomic_dir(args.out) as tmp:
        pl.DataFrame({DATE: data.date_ids, **{n: matrix[:, index[n]] for n in kept}}).write_parquet(
            tmp / "features.parquet")
        write_json(tmp / "registry.json", {"features": kept, "engineering": dataclasses.asdict(feat_cfg), "kinds": kinds,
                                           "splits": splits.to_dict(data.date_ids)})
        write_json(tmp / "report.json", report)
        ranked = sorted(report, key=lambda r: -r["score"])
        pl.DataFrame({"rank": list(range(1, len(ranked) + 1)),
                      "feature": [r["feature"] for r in ranked],
                      "score": [r["score"] for r in ranked],
                      "kept": [int(r["kept"]) for r in ranked]}).write_csv(tmp / "scores.csv")


if __name__ == "__main__":
    cli.run("prescreen", main)
