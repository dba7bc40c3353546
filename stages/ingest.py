"""Validate a dataset folder and convert it to typed parquet with name registries.

usage: python stages/ingest.py --out artifacts/data

The folder is `data.dir` of params.yaml. It is read from there, never passed through the
shell command line, so no value of it can run a command.
"""
from pathlib import Path

from spreadcast import cli, config
from spreadcast.data.ingest import ingest
from spreadcast.data.layout import read_dataset
from spreadcast.io import atomic_dir


def main() -> None:
    p = cli.parser(__doc__)
    p.add_output("--out")
    args = p.parse_args()
    cfg = config.load("data", args.params)
    ds = read_dataset(Path(cfg.dir), lags=cfg.lags)
    for w in ds.warnings:
        print(f"ingest: warning: {w}")
    with atomic_dir(args.out) as tmp:
        registry = ingest(ds, tmp, cfg.label_tolerance)
    print(f"ingest: {len(registry['features'])} columns, {len(registry['targets'])} targets, "
          f"lags {registry['lags']}, train date_id {registry['train_dates']}, test {registry['test_dates']} "
          f"({registry['test_overlap_days']} overlapping train)")


if __name__ == "__main__":
    cli.run("ingest", main)
