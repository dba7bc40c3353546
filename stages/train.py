"""Train the gated transformer of one lag head.

usage: python stages/train.py --lag K --tensors artifacts/tensors --out artifacts/train/lagK \
           --metrics artifacts/metrics/train_lagK.json --work artifacts/.work/train_lagK

Checkpoints are written to --work while training, so a killed run resumes where it stopped;
they move into --out when training ends.
"""
from pathlib import Path

import torch
from spreadcast import cli, config
from spreadcast.features import windows
from spreadcast.io import atomic_dir, write_json
from spreadcast.model.net import ModelConfig, SpreadTransformer
from spreadcast.training import distributed, linear
from spreadcast.training.device import attention_backend, place_windows, set_precision
from spreadcast.features.windows import head_data
from spreadcast.training.loop import data_fingerprint, fit, move_checkpoints, open_live


def model_config(cfg: config.TrainConfig, n_features: int, n_targets: int, history: int) -> ModelConfig:
    return ModelConfig(n_features=n_features, n_targets=n_targets, history=history,
                       d_model=cfg.d_model, n_heads=cfg.n_heads, n_layers=cfg.n_layers,
                       ff_mult=cfg.ff_mult, dropout=cfg.dropout, time2vec_dim=cfg.time2vec_dim,
                       positional=cfg.positional, grad_checkpoint=cfg.grad_checkpoint,
                       skip_decays=tuple(cfg.skip_decays))


def main() -> None:
    p = cli.parser(__doc__)
    p.add_argument("--lag", type=int, required=True)
    p.add_input("--tensors")
    p.add_output("--out")
    p.add_output("--metrics")
    p.add_output("--work", help="checkpoints while training; a rerun resumes from here")
    args = p.parse_args()
    cfg = config.load("train", args.params)
    distributed.run(cfg.processes, lambda ctx, device: train(args, cfg, ctx, device))


def train(args, cfg: config.TrainConfig, ctx: distributed.Context, device: torch.device) -> None:

    tensors = windows.load(args.tensors)
    cols = tensors.head(args.lag)
    if cols.size == 0:
        raise config.ConfigError(f"--lag {args.lag}: no targets of this lag in {args.tensors}")
    data = head_data(tensors, args.lag, tensors.model_inputs)
    torch.manual_seed(cfg.seed)
    mcfg = model_config(cfg, len(tensors.model_inputs), int(cols.size), tensors.history)
    model = SpreadTransformer(mcfg)
    if cfg.linear_start_alpha > 0:             # the linear path starts at its ridge fit
        linear.ridge_start(model, data.windows, data.train_rows, cfg.linear_start_alpha)
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    if ctx.main:
        print(f"train lag {args.lag}: {data.train_rows.size} train / {data.val_rows.size} val days, "
              f"window {tensors.history} x {mcfg.n_features} features -> {mcfg.n_targets} targets; "
              f"{n_params:,} parameters on {device}"
              + (f" x {ctx.world} processes" if ctx.active else ""), flush=True)
    precision = set_precision(device, cfg.tf32, cfg.amp)
    data.windows, where = place_windows(data.windows, device, cfg.windows_on_device)
    if ctx.main:
        backend = attention_backend(model, cfg.batch_size, device, cfg.amp)
        print(f"  precision {precision}; windows on {where}; attention {backend}", flush=True)
    meta = {"model": mcfg.to_dict(), "lag": args.lag, "features": tensors.model_inputs,
            "targets": [tensors.target_names[j] for j in cols],
            "params_hash": config.params_hash(cfg), "data_fingerprint": data_fingerprint(Path(args.tensors))}
    work = Path(args.work)
    if not ctx.main:                           # other ranks train; rank 0 alone writes
        fit(model, data, cfg, work, meta, ctx=ctx)
        return
    with atomic_dir(args.out) as tmp:
        live = open_live(tmp / "live")
        summary = fit(model, data, cfg, work, meta, live=live, ctx=ctx)
        if live is not None:
            live.end()
        move_checkpoints(work, tmp)
    write_json(args.metrics, {"lag": args.lag, "best_epoch": summary["best_epoch"],
                              "epochs_run": summary["epochs_run"], "parameters": n_params,
                              "collapsed_epochs": summary["collapsed_epochs"],
                              **{f"val_{k}": v for k, v in summary["val"].items()}})


if __name__ == "__main__":
    cli.run("train", main)
