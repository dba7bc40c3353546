"""Fine-tune one lag head on its pruned features.

usage: python stages/finetune.py --lag K --tensors artifacts/tensors --train artifacts/train/lagK \
           --prune artifacts/prune/lagK --out artifacts/finetune/lagK --metrics artifacts/metrics/finetune_lagK.json \
           --work artifacts/.work/finetune_lagK
"""
from pathlib import Path

from spreadcast import cli, config
from spreadcast.features import windows
from spreadcast.io import atomic_dir, read_json, write_json
from spreadcast.training import distributed
from spreadcast.training.finetune import finetune
from spreadcast.training.loop import move_checkpoints, open_live


def main() -> None:
    p = cli.parser(__doc__)
    p.add_argument("--lag", type=int, required=True)
    for name in ("--tensors", "--train", "--prune"):
        p.add_input(name)
    for name in ("--out", "--metrics", "--work"):
        p.add_output(name)
    args = p.parse_args()
    train_cfg = config.load("train", args.params)
    cfg = config.load("finetune", args.params)
    distributed.run(train_cfg.processes, lambda ctx, device: run(args, train_cfg, cfg, ctx, device))


def run(args, train_cfg, cfg, ctx: distributed.Context, device) -> None:
    tensors = windows.load(args.tensors)
    kept = read_json(Path(args.prune) / "registry.json")["features"]
    if not ctx.main:                           # other ranks train; rank 0 alone writes
        finetune(Path(args.train), kept, tensors, args.lag, train_cfg, cfg, Path(args.work), None, ctx, device)
        return
    print(f"finetune lag {args.lag}: {len(kept)} of {len(tensors.model_inputs)} features, "
          f"{cfg.epochs} epochs at lr {cfg.lr}" + (f", {ctx.world} processes" if ctx.active else ""), flush=True)
    with atomic_dir(args.out) as tmp:
        live = open_live(tmp / "live")
        summary = finetune(Path(args.train), kept, tensors, args.lag, train_cfg, cfg, Path(args.work), live,
                           ctx, device)
        if live is not None:
            live.end()
        move_checkpoints(Path(args.work), tmp)
    write_json(args.metrics, {
        "lag": args.lag, "features": summary["features"], "kept_unpruned": summary["kept_unpruned"],
        "unpruned_val_sharpe": summary["unpruned_val"]["sharpe"],
        "finetuned_val_sharpe": summary["finetuned_val"]["sharpe"], "epochs_run": summary["epochs_run"],
        "features_dropped": len(summary["load"]["features"]["dropped"])})


if __name__ == "__main__":
    cli.run("finetune", main)
