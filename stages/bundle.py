"""Export the trained models as a self-contained competition bundle.

usage: python stages/bundle.py --artifacts artifacts --package src/spreadcast --out artifacts/bundle
"""
from pathlib import Path

from spreadcast import cli
from spreadcast.io import atomic_dir
from spreadcast.serve.bundle import export


def main() -> None:
    p = cli.parser(__doc__)
    for name in ("--artifacts", "--package"):
        p.add_input(name)
    p.add_output("--out")
    args = p.parse_args()
    with atomic_dir(args.out) as tmp:
        manifest = export(Path(args.artifacts), Path(args.package), tmp)
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file()) / 2**20
    print(f"bundle: {len(manifest)} files, {size:.1f} MiB in {args.out}")


if __name__ == "__main__":
    cli.run("bundle", main)
