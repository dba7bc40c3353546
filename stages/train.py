"""Train the gated transformer of one lag head.

usage: python stages/train.py --lag K --tensors artifacts/tensors --out artifacts/train/lagK \
           --metrics artifacts/metrics/train_lagK.json --work artifacts/.work/train_lagK

Checkpoints are written to --work while training, so a killed run resumes where it stopped;
they move into --out when training ends.

The validation days choose the number of epochs (the best epoch, and early stopping). With
`train.epoch_folds: n > 0` it rests on several periods: the same configuration first trains on
the fitting days of each of the last n walk-forward folds (inputs from that fold's own screen)
and is scored on the fold every epoch; the head's best epoch and early stopping then follow the
mean of its validation Sharpe and those folds' at each epoch.

With `train.evidence_folds: n > 0` the same configuration then trains on the fitting days of
each of the last n folds for as many epochs as the head chose (no early stopping on the fold)
and forecasts the fold's days; the forecasts go to --out/evidence, where the blend finds its
evidence for the transformer's weight on days that chose nothing.
"""
import dataclasses
from pathlib import Path

import numpy as np
import torch
from spreadcast import cli, config
from spreadcast.features import windows
from spreadcast.evaluation import metric
from spreadcast.io import atomic_dir, save_arrays, write_json
from spreadcast.model.net import ModelConfig, SpreadTransformer
from spreadcast.training import distributed, linear
from spreadcast.training.device import attention_backend, place_windows, set_precision
from spreadcast.features.windows import head_data
from spreadcast.model.inference import predict
from spreadcast.training.loop import data_fingerprint, fit, move_checkpoints, open_live
from spreadcast.evaluation.walkforward import embargo_of, folds


def model_config(cfg: config.TrainConfig, n_features: int, n_targets: int, history: int) -> ModelConfig:
    return ModelConfig(n_features=n_features, n_targets=n_targets, history=history,
                       d_model=cfg.d_model, n_heads=cfg.n_heads, n_layers=cfg.n_layers,
                       ff_mult=cfg.ff_mult, dropout=cfg.dropout, time2vec_dim=cfg.time2vec_dim,
                       positional=cfg.positional, grad_checkpoint=cfg.grad_checkpoint,
                       skip_decays=tuple(cfg.skip_decays))


def new_model(cfg: config.TrainConfig, data, n_features: int, n_targets: int, history: int,
              device: torch.device) -> SpreadTransformer:
    """A head's model from the seed, on `device`; with `linear_start_alpha` its linear path
    starts at its ridge fit on `data`'s training rows."""
    torch.manual_seed(cfg.seed)
    model = SpreadTransformer(model_config(cfg, n_features, n_targets, history))
    if cfg.linear_start_alpha > 0:
        linear.ridge_start(model, data.windows, data.train_rows, cfg.linear_start_alpha)
    return model.to(device)


def main() -> None:
    p = cli.parser(__doc__)
    p.add_argument("--lag", type=int, required=True)
    p.add_input("--tensors")
    p.add_output("--out")
    p.add_output("--metrics")
    p.add_output("--work", help="checkpoints while training; a rerun resumes from here")
    args = p.parse_args()
    cfg = config.load("train", args.params)
    n_folds = config.load("walkforward", args.params).folds
    for key in ("epoch_folds", "evidence_folds"):
        if getattr(cfg, key) > n_folds:
            raise config.ConfigError(f"train.{key}: {getattr(cfg, key)} is more than walkforward.folds ({n_folds})")
    distributed.run(cfg.processes, lambda ctx, device: train(args, cfg, n_folds, ctx, device))


def train(args, cfg: config.TrainConfig, n_folds: int, ctx: distributed.Context, device: torch.device) -> None:

    tensors = windows.load(args.tensors)
    cols = tensors.head(args.lag)
    if cols.size == 0:
        raise config.ConfigError(f"--lag {args.lag}: no targets of this lag in {args.tensors}")
    data = head_data(tensors, args.lag, tensors.model_inputs)
    model = new_model(cfg, data, len(tensors.model_inputs), int(cols.size), tensors.history, device)
    mcfg = model.cfg
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
    earlier = fold_curves(args.lag, cfg, n_folds, tensors, meta, work, ctx, device)
    reference = [entry["curve"] for entry in earlier]
    if not ctx.main:                           # other ranks train; rank 0 alone writes
        summary = fit(model, data, cfg, work, meta, ctx=ctx, reference=reference)
        fold_evidence(args.lag, cfg, n_folds, tensors, chosen_epochs(summary), meta, work, ctx, device)
        return
    with atomic_dir(args.out) as tmp:
        live = open_live(tmp / "live")
        summary = fit(model, data, cfg, work, meta, live=live, ctx=ctx, reference=reference)
        if live is not None:
            live.end()
        evidence = fold_evidence(args.lag, cfg, n_folds, tensors, chosen_epochs(summary), meta, work, ctx, device)
        if evidence:
            (tmp / "evidence").mkdir()
            save_arrays(tmp / "evidence", **{f"fold{k}_{name}": entry[name] for k, entry in evidence.items()
                                             for name in ("dates", "forecast")})
        move_checkpoints(work, tmp)
    write_json(args.metrics, {"lag": args.lag, "best_epoch": summary["best_epoch"],
                              "epochs_run": summary["epochs_run"], "parameters": n_params,
                              "collapsed_epochs": summary["collapsed_epochs"], "epoch_folds": earlier,
                              "evidence_folds": [{"fold": k, "epochs": entry["epochs"], "sharpe": entry["sharpe"]}
                                                 for k, entry in evidence.items()],
                              **{f"val_{k}": v for k, v in summary["val"].items()}})


def chosen_epochs(summary: dict) -> int:
    """How many epochs the head's training kept (its best epoch; all it ran if none was best)."""
    return summary["best_epoch"] if summary["best_epoch"] > 0 else summary["epochs_run"]


def fold_model(lag: int, cfg: config.TrainConfig, n_folds: int, k: int, tensors,
               device: torch.device) -> tuple:
    """The head's configuration on walk-forward fold k (0 the oldest): its data, with the fold's
    fitting days to train on, the fold's days as its validation days and the inputs screened on
    the fitting days, and a model from the seed."""
    fit_rows, test_rows = folds(tensors.splits.train, n_folds, embargo_of(tensors.target_lags))[k]
    inputs = tensors.fold_inputs[k]
    data = dataclasses.replace(head_data(tensors, lag, inputs), train_rows=fit_rows, val_rows=test_rows)
    return data, new_model(cfg, data, len(inputs), int(tensors.head(lag).size), tensors.history, device)


def fold_curves(lag: int, cfg: config.TrainConfig, n_folds: int, tensors, meta: dict, work: Path,
                ctx: distributed.Context, device: torch.device) -> list[dict]:
    """Each of the last `cfg.epoch_folds` walk-forward folds: the head's configuration trained on
    the fold's fitting days (its own screen's inputs, the same seed) and its validation Sharpe on
    the fold after every epoch."""
    if cfg.epoch_folds == 0:
        return []
    out = []
    for k in range(n_folds - cfg.epoch_folds, n_folds):
        data, model = fold_model(lag, cfg, n_folds, k, tensors, device)
        fit_rows, test_rows, inputs = data.train_rows, data.val_rows, tensors.fold_inputs[k]
        if ctx.main:      # (`fit` places the windows on the device)
            print(f"train lag {lag}: walk-forward fold {k + 1} of {n_folds} for the number of epochs: "
                  f"{fit_rows.size} fitting days, scored on {test_rows.size} days from date "
                  f"{int(tensors.date_ids[test_rows[0]])}", flush=True)
        summary = fit(model, data, cfg, work / f"fold{k + 1}", {**meta, "features": inputs, "fold": k + 1},
                      ctx=ctx, keep=None)
        out.append({"fold": k + 1, "dates": [int(tensors.date_ids[test_rows[0]]), int(tensors.date_ids[test_rows[-1]])],
                    "best_epoch": summary["best_epoch"],
                    "curve": [round(float(r["val_sharpe"]), 6) for r in summary["history"]]})
    return out


def fold_evidence(lag: int, cfg: config.TrainConfig, n_folds: int, tensors, epochs: int, meta: dict, work: Path,
                  ctx: distributed.Context, device: torch.device, n_evidence: int | None = None) -> dict[int, dict]:
    """Forecasts of each of the last `n_evidence` (default `cfg.evidence_folds`) walk-forward
    folds by the head's configuration (its own screen's inputs, the same seed) trained on the
    fold's fitting days for `epochs` epochs of its schedule, the number the head's training
    chose, with no early stopping on the fold's days: {fold number: its dates, the forecasts
    (days x the head's targets), their Sharpe, the epochs}."""
    n_evidence = cfg.evidence_folds if n_evidence is None else n_evidence
    through = dataclasses.replace(cfg, patience=cfg.epochs + 1)     # the fold's own days stop nothing
    out = {}
    for k in range(n_folds - n_evidence, n_folds):
        data, model = fold_model(lag, through, n_folds, k, tensors, device)
        if ctx.main:
            print(f"train lag {lag}: walk-forward fold {k + 1} of {n_folds} for the blend's evidence: "
                  f"{epochs} epochs on {data.train_rows.size} fitting days", flush=True)
        fit(model, data, through, work / f"evidence{k + 1}", {**meta, "features": tensors.fold_inputs[k],
                                                              "fold": k + 1}, ctx=ctx, keep=None, stop_at=epochs)
        forecast = predict(model, data.windows, data.val_rows, cfg.batch_size)
        sharpe = metric.summary(tensors.raw_labels[data.val_rows][:, tensors.head(lag)], forecast)["sharpe"]
        if ctx.main:
            print(f"  fold {k + 1}: Sharpe {sharpe:+.3f} on {data.val_rows.size} days", flush=True)
        out[k + 1] = {"dates": tensors.date_ids[data.val_rows].astype(np.int64), "forecast": forecast.astype(np.float32),
                      "sharpe": round(float(sharpe), 4), "epochs": epochs}
    return out


if __name__ == "__main__":
    cli.run("train", main)
