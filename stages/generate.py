"""Write the embedded synthetic market: a dataset folder in the competition's layout and its oracle.

usage: python stages/generate.py --dataset artifacts/synthetic/dataset --oracle artifacts/synthetic/oracle
"""
from spreadcast import cli, config
from spreadcast.data import synthetic


def main() -> None:
    p = cli.parser(__doc__)
    p.add_output("--dataset")
    p.add_output("--oracle")
    args = p.parse_args()
    cfg = config.load("synthetic", args.params)
    summary = synthetic.write(synthetic.generate(cfg), args.dataset, args.oracle, cfg)
    print(f"generate: {summary['train_days']} train days, {summary['test_days']} test days "
          f"({summary['scored_days']} scored), {summary['features']} columns, {summary['targets']} targets")


if __name__ == "__main__":
    cli.run("generate", main)
