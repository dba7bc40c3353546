"""The training loop of one lag head.

AdamW with gradient clipping and a learning-rate schedule that is a pure function of the step;
mixed precision through one `torch.autocast` context built once (bf16, or fp16 with a grad
scaler on CUDA); validation with the competition metric every epoch, early stopping and best
checkpoint selection on it (or on its mean with the same epochs of earlier periods' runs,
`reference`); `best` and `last` checkpoints; dvclive logging per epoch.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from spreadcast.config import TrainConfig
from spreadcast.errors import CheckpointError, CollapseError
from spreadcast.evaluation import metric
from spreadcast.evaluation.walkforward import recency_weights
from spreadcast.features.windows import HeadData
from spreadcast.io import sha256_bytes, sha256_file
from spreadcast.model import checkpoint, losses
from spreadcast.model.inference import predict
from spreadcast.model.net import SPARSE_GATE, SpreadTransformer
from spreadcast.training import distributed
from spreadcast.training.device import amp_dtype, place_windows, set_precision
from spreadcast.training.distributed import SINGLE, Context

COLLAPSE_STD = 1e-6   # cross-target spread of standardised forecasts below this: collapsed


# Learning-rate schedule shape, as fractions of the base rate (or of the run, for the peak).
COSINE_FLOOR = 0.05        # cosine decay ends here, not at zero
ONECYCLE_PEAK_AT = 0.3     # one-cycle: share of the steps spent rising to the peak
ONECYCLE_START = 0.04      # one-cycle: rate at step 0
ONECYCLE_FLOOR = 1e-3      # one-cycle: rate at the last step


def lr_at(step: int, total: int, warmup: int, base: float, schedule: str) -> float:
    """Learning rate at `step`: linear warm-up, then cosine decay (or a one-cycle shape)."""
    if schedule == "onecycle":
        peak = max(1, int(ONECYCLE_PEAK_AT * total))
        if step < peak:
            return base * (ONECYCLE_START + (1 - ONECYCLE_START) * step / peak)
        progress = (step - peak) / max(1, total - peak)
        return base * (ONECYCLE_FLOOR + (1 - ONECYCLE_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress)))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def epoch_order(rows: np.ndarray, halflife: float, generator: torch.Generator) -> np.ndarray:
    """An epoch's training rows in a seeded order: each row once (`halflife` 0), or as many rows
    drawn with replacement, a row's chance halving every `halflife` days back from the last one."""
    if halflife <= 0:
        return rows[torch.randperm(rows.size, generator=generator).numpy()]
    chance = torch.as_tensor(recency_weights(rows, halflife))
    return rows[torch.multinomial(chance, rows.size, replacement=True, generator=generator).numpy()]


def autocast_context(device: torch.device, enabled: bool):
    """One autocast context for every pass: bf16 where supported, fp16 only on CUDA without bf16."""
    dtype = amp_dtype(device, enabled)
    if dtype == torch.float32:
        return contextlib.nullcontext, torch.amp.GradScaler("cuda", enabled=False)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


def evaluate_head(model, data: HeadData, rows: np.ndarray, batch_size: int, autocast=contextlib.nullcontext) -> dict:
    forecast = predict(model, data.windows, rows, batch_size, autocast)
    spread = forecast.std(axis=1)
    # scored on the standardised scale, the one the heads are combined on for submission
    result = metric.summary(data.raw_labels[rows], forecast)
    result["pred_spread"] = float(np.median(spread)) if spread.size else 0.0
    result["collapsed_days"] = int((spread < COLLAPSE_STD).sum())
    return result


def _param_groups(model: torch.nn.Module, weight_decay: float, gate_lr_mult: float, linear_lr_mult: float):
    """Weight decay on matrices only; the gate logits and the linear path's decay rates get
    their own (faster) learning rate, since at the small rates that suit the network they
    would barely move, and so do the linear path's weights."""
    decay, plain, gate, skip = [], [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith(("gate.", "pool.")):
            gate.append(p)
        elif name.startswith("skip."):
            skip.append(p)
        else:
            (decay if p.ndim >= 2 else plain).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "lr_mult": 1.0},
            {"params": plain, "weight_decay": 0.0, "lr_mult": 1.0},
            {"params": gate, "weight_decay": 0.0, "lr_mult": gate_lr_mult},
            {"params": skip, "weight_decay": weight_decay, "lr_mult": linear_lr_mult}]


def _resumable(out: Path, run_meta: dict) -> dict | None:
    """The `last` checkpoint in `out` if it belongs to this very run (same config and data)."""
    if not (out / "last.json").is_file():
        return None
    try:
        state, saved = checkpoint.load(out / "last")
    except CheckpointError as exc:
        print(f"  not resuming: {exc}", flush=True)
        return None
    same = all(json.loads(json.dumps(v)) == saved.get(k) for k, v in run_meta.items())
    if not same or "progress" not in state:
        print(f"  not resuming: {out / 'last'} belongs to another configuration or data", flush=True)
        return None
    return state


def activation_stats(model: SpreadTransformer, x: torch.Tensor, m: torch.Tensor) -> dict:
    """Mean, std, min and max of the encoder output, head input and head output."""
    with torch.no_grad():
        acts = model.activations(x, m)
    return {f"act_{name}_{stat}": float(getattr(t.float(), stat)())
            for name, t in acts.items() for stat in ("mean", "std", "min", "max")}


@dataclass
class _Progress:
    """Where a run stands after an epoch; saved with the `last` checkpoint so that a killed run
    resumes from it."""

    epoch: int = 0                          # epochs done
    step: int = 0                           # optimiser steps done
    norm: tuple[float, float] = (1.0, 1.0)  # regression and rank loss at the start
    best: float = -math.inf                 # best validation Sharpe so far
    best_epoch: int = -1
    stale: int = 0                          # epochs since the best
    history: list = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "norm": list(self.norm), "best": self.best,
                "best_epoch": self.best_epoch, "stale": self.stale, "history": self.history}

    @classmethod
    def from_dict(cls, d: dict) -> "_Progress":
        return cls(epoch=d["epoch"], step=d["step"], norm=tuple(d["norm"]), best=d["best"],
                   best_epoch=d["best_epoch"], stale=d["stale"], history=list(d["history"]))


class _Run:
    """One call of `fit`: the optimiser, schedule and loss of a model on its data, and the
    parts of an epoch (`start`, `train_epoch`, `validate`, `save`, `finish`)."""

    def __init__(self, model: SpreadTransformer, data: HeadData, cfg: TrainConfig, out: Path, meta: dict,
                 epochs: int, lr: float, groups: dict[str, torch.Tensor] | None, ctx: Context,
                 reference: list[list[float]] | None = None):
        self.model, self.cfg, self.out, self.ctx, self.groups = model, cfg, out, ctx, groups or {}
        self.reference = [list(curve) for curve in reference or [] if len(curve)]
        self.epochs, self.base_lr = epochs, lr
        self.device = next(model.parameters()).device
        self.autocast, self.scaler = autocast_context(self.device, cfg.amp)
        set_precision(self.device, cfg.tf32, cfg.amp)
        self.optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay, cfg.gate_lr_mult,
                                                         cfg.linear_lr_mult), lr=lr,
                                           fused=self.device.type == "cuda")     # one kernel per step on a GPU
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.n = len(data.train_rows)
        self.steps_per_epoch = math.ceil(self.n / cfg.batch_size)
        self.total = epochs * self.steps_per_epoch
        self.warmup = cfg.warmup_epochs * self.steps_per_epoch
        self.rank_scale = (data.target_scale / data.target_scale.mean()).to(self.device)
        self.run_meta = {**meta, "fit": {"epochs": epochs, "lr": lr}}
        if self.reference:
            self.run_meta["reference"] = self.reference
        windows, _ = place_windows(data.windows, self.device, cfg.windows_on_device)
        self.data = dataclasses.replace(data, windows=windows)
        self.pin = cfg.pin_memory and self.device.type == "cuda" and windows.device.type != "cuda"
        self.say = print if ctx.main else (lambda *a, **k: None)

    def terms(self, rows: np.ndarray, net: torch.nn.Module):
        """Regression, rank and gate loss of a batch, and each target group's regression loss."""
        cfg, device = self.cfg, self.device
        x, m, y = self.data.windows.batch(rows)
        if self.pin:             # page-locked host memory: the copies below overlap compute
            x, m, y = x.pin_memory(), m.pin_memory(), y.pin_memory()
        x, m, y = (t.to(device, non_blocking=self.pin) for t in (x, m, y))
        have = ~torch.isnan(y)
        with self.autocast():
            forecast, score = net(x, m)
        forecast, score = forecast.float(), score.float()
        regression = losses.huber(forecast, y, have, cfg.huber_delta)
        if cfg.regression_loss == "hybrid":
            regression = 0.5 * regression + 0.5 * losses.mse(forecast, y, have)
        with torch.no_grad():
            parts = {name: losses.huber(forecast[:, mask], y[:, mask], have[:, mask], cfg.huber_delta).item()
                     for name, mask in self.groups.items()}
        return (regression, losses.pairwise_rank(score, y * self.rank_scale, have),
                losses.gate_l1(self.model.gate.values()), parts)

    def start(self, live) -> _Progress:
        """The progress of the `last` checkpoint of this very run, restored with its optimiser,
        scaler and RNG states, or a fresh start: each loss term normalised by its magnitude on
        the first batches, so neither silences the other."""
        resumed = _resumable(self.out, self.run_meta)
        if resumed is not None:
            self.model.load_state_dict(resumed["model"])
            self.optimizer.load_state_dict(resumed["optimizer"])
            self.scaler.load_state_dict(resumed["scaler"])
            self.generator.set_state(resumed["generator"])
            torch.set_rng_state(resumed["rng"])
            progress = _Progress.from_dict(resumed["progress"])
            self.say(f"  resuming after epoch {progress.epoch} from {self.out / 'last.pt'}", flush=True)
            for record in progress.history:
                _log(live, record)
            return progress
        with torch.no_grad():
            self.model.train()
            h0, r0, _, _ = self.terms(self.data.train_rows[:min(self.n, 4 * self.cfg.batch_size)], self.model)
        return _Progress(norm=(max(h0.item(), 1e-8), max(r0.item(), 1e-8)))

    def train_epoch(self, epoch: int, progress: _Progress, net: torch.nn.Module) -> tuple[np.ndarray, dict]:
        """One pass over the training rows in a seeded order; the mean of each weighted loss term
        and each group's summed regression loss."""
        cfg, optimizer = self.cfg, self.optimizer
        gw = losses.gate_weight(cfg.gate_l1, epoch, cfg.gate_warmup_epochs)
        order = epoch_order(self.data.train_rows, cfg.recency_halflife, self.generator)
        sums = np.zeros(3)
        group_sums = dict.fromkeys(self.groups, 0.0)
        bar = tqdm(range(self.steps_per_epoch), desc=f"epoch {epoch + 1}/{self.epochs}", leave=False,
                   disable=not (self.ctx.main and sys.stderr.isatty()))
        for b in bar:
            rows = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            lr_now = lr_at(progress.step, self.total, self.warmup, self.base_lr, cfg.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr_now * group["lr_mult"]
            h, r, g, group_parts = self.terms(self.ctx.shard(rows), net)
            for name, value in group_parts.items():
                group_sums[name] += value
            weighted = torch.stack([h / progress.norm[0], cfg.rank_weight * r / progress.norm[1], gw * g])
            loss = weighted.sum()
            optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.scaler.step(optimizer)
            self.scaler.update()
            sums += self.ctx.mean(weighted.detach()).cpu().numpy()
            progress.step += 1
            bar.set_postfix(loss=f"{loss.item():.4f}")
        return sums / self.steps_per_epoch, group_sums

    def validate(self, epoch: int, parts: np.ndarray, group_sums: dict, step: int) -> dict:
        """The epoch's record: losses and their shares, validation metric, gates, schedule."""
        model, cfg = self.model, self.cfg
        val = evaluate_head(model, self.data, self.data.val_rows, cfg.batch_size, self.autocast)
        gates = model.gate.values().detach().cpu()
        record = {
            "epoch": epoch + 1, "loss": float(parts.sum()),
            "loss_regression": float(parts[0]), "loss_rank": float(parts[1]), "loss_gate": float(parts[2]),
            **{f"share_{k}": float(v / max(parts.sum(), 1e-12))
               for k, v in zip(("regression", "rank", "gate"), parts)},
            "val_sharpe": val["sharpe"], "val_ic": val["ic_mean"],
            "val_pred_spread": val["pred_spread"], "val_collapsed_days": val["collapsed_days"],
            "gate_mean": float(gates.mean()), "gate_sparsity": float((gates < SPARSE_GATE).float().mean()),
            "lr": lr_at(max(step - 1, 0), self.total, self.warmup, self.base_lr, cfg.schedule),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            **{f"loss_regression_{name}": v / self.steps_per_epoch for name, v in group_sums.items()},
        }
        if self.reference:
            record["select_sharpe"] = self.selection_score(record)
        if cfg.activation_stats:
            x, m, _ = self.data.windows.batch(self.data.val_rows[:cfg.batch_size])
            model.eval()
            record.update(activation_stats(model, x.to(self.device), m.to(self.device)))
        if val["collapsed_days"] and self.ctx.main:
            warnings.warn(f"epoch {epoch + 1}: forecasts collapsed on {val['collapsed_days']} validation days")
        self.say(f"  epoch {epoch + 1:>3}/{self.epochs}  loss {record['loss']:.4f} "
                 f"(regression {record['share_regression']:.0%}, rank {record['share_rank']:.0%}, "
                 f"gate {record['share_gate']:.0%})  val sharpe {val['sharpe']:+.3f}  ic {val['ic_mean']:+.4f}"
                 + (f"  with earlier periods {record['select_sharpe']:+.3f}" if self.reference else ""),
                 flush=True)
        return record

    def selection_score(self, record: dict) -> float:
        """What chooses the epoch: the validation Sharpe, or its mean with each reference curve's
        Sharpe at the same epoch (a curve that stopped earlier counts with its last epoch)."""
        if not np.isfinite(record["val_sharpe"]):
            return -math.inf
        at = record["epoch"] - 1
        scores = [record["val_sharpe"]] + [curve[min(at, len(curve) - 1)] for curve in self.reference]
        scores = [v for v in scores if np.isfinite(v)]
        return float(np.mean(scores))

    def save(self, progress: _Progress, record: dict) -> None:
        """Account for the epoch just validated: `best` when it is the best so far, `last` always."""
        val = record["val_sharpe"] if np.isfinite(record["val_sharpe"]) else -math.inf
        score = record["select_sharpe"] if self.reference else val      # (`validate` computed it)
        scores = {"val_sharpe": val, **({"select_sharpe": score} if self.reference else {})}
        epoch = record["epoch"]
        progress.epoch = epoch
        if score > progress.best:
            progress.best, progress.best_epoch, progress.stale = score, epoch, 0
            if self.ctx.main:
                checkpoint.save(self.out / "best", {"model": self.model.state_dict(), "epoch": epoch},
                                {**self.run_meta, "epoch": epoch, **scores})
        else:
            progress.stale += 1
        if self.ctx.main:
            checkpoint.save(self.out / "last", {"model": self.model.state_dict(),
                                                "optimizer": self.optimizer.state_dict(),
                                                "scaler": self.scaler.state_dict(),
                                                "generator": self.generator.get_state(),
                                                "rng": torch.get_rng_state(), "progress": progress.to_dict()},
                            {**self.run_meta, "epoch": epoch, **scores})
        if progress.stale >= self.cfg.patience:
            self.say(f"  early stop: no validation gain for {self.cfg.patience} epochs", flush=True)

    def finish(self, progress: _Progress, keep: str | None) -> dict:
        """Load the kept checkpoint (`best` or `last`), check it did not collapse; the summary.
        With `keep=None` (a run kept only for its validation curve) the model stays as it ends."""
        model, ctx, history = self.model, self.ctx, progress.history
        if keep is None:
            return {"best_epoch": progress.best_epoch, "epochs_run": len(history), "val": {}, "history": history,
                    "collapsed_epochs": sum(1 for r in history if r["val_collapsed_days"])}
        if progress.best_epoch < 0 and ctx.main:
            checkpoint.save(self.out / "best", {"model": model.state_dict(), "epoch": len(history)},
                            {**self.run_meta, "epoch": len(history), "val_sharpe": None})
        ctx.barrier()                            # rank 0's checkpoints are complete
        state, _ = checkpoint.load(self.out / keep)
        model.load_state_dict(state["model"])
        ctx.barrier()                            # every rank has read them before they are moved
        final = evaluate_head(model, self.data, self.data.val_rows, self.cfg.batch_size, self.autocast)
        if final["pred_spread"] < COLLAPSE_STD:
            raise CollapseError(f"final model collapsed: median cross-target spread of forecasts "
                                f"{final['pred_spread']:.2e} < {COLLAPSE_STD:.0e} on validation")
        return {"best_epoch": progress.best_epoch, "epochs_run": len(history), "val": final, "history": history,
                "collapsed_epochs": sum(1 for r in history if r["val_collapsed_days"])}


def fit(model: SpreadTransformer, data: HeadData, cfg: TrainConfig, out: Path, meta: dict,
        live=None, epochs: int | None = None, lr: float | None = None,
        on_epoch=None, groups: dict[str, torch.Tensor] | None = None, keep: str | None = "best",
        ctx: Context = SINGLE, reference: list[list[float]] | None = None, stop_at: int | None = None) -> dict:
    """Train `model`, writing `best`/`last` checkpoints into `out`; returns the summary.

    If `out` holds a `last` checkpoint of the same run (config, data, epochs and learning
    rate), training continues from it: same epoch, optimiser, scaler and RNG states, so the
    result equals that of an uninterrupted run. `on_epoch(epoch, model)` runs before each epoch
    (fine-tuning freezes and unfreezes there); `groups` maps a name to a boolean mask over the
    targets, and each group's regression loss is reported per epoch. `keep="last"` ends on the
    last epoch's weights instead of the best validation epoch's (a refit has no held-out days);
    `keep=None` keeps neither (a run wanted only for its per-epoch validation Sharpe).

    `reference` holds per-epoch validation Sharpe curves of the same configuration trained on
    earlier periods (walk-forward folds, `fold_curves`): the best epoch and early stopping then
    follow the mean of this run's validation Sharpe and theirs at each epoch, so the number of
    epochs rests on several periods rather than on the validation days alone.

    `stop_at` ends the run after that many epochs of its schedule (the learning rate follows
    the schedule of all `epochs`, as in a run that went on).

    Under several processes (`ctx`), each takes its share of every batch and
    DistributedDataParallel averages the gradients; only rank 0 prints and writes.
    """
    run = _Run(model, data, cfg, out, meta, cfg.epochs if epochs is None else epochs,
               cfg.lr if lr is None else lr, groups, ctx, reference)
    progress = run.start(live)
    net, trainable = model, None
    for epoch in range(progress.epoch, run.epochs if stop_at is None else min(stop_at, run.epochs)):
        if progress.stale >= cfg.patience:
            break
        model.train()
        if on_epoch is not None:
            on_epoch(epoch, model)
        now_trainable = tuple(p.requires_grad for p in model.parameters())
        if now_trainable != trainable:       # DDP and compile see the parameters that train now
            net, trainable = distributed.wrap(model, ctx, run.device), now_trainable
            if cfg.compile:
                net = torch.compile(net)
        parts, group_sums = run.train_epoch(epoch, progress, net)
        record = run.validate(epoch, parts, group_sums, progress.step)
        progress.history.append(record)
        _log(live, record)
        run.save(progress, record)
    return run.finish(progress, keep)


def _log(live, record: dict) -> None:
    if live is None:
        return
    for key, value in record.items():
        if key != "epoch" and value is not None and np.isfinite(value):
            live.log_metric(key, value)
    live.next_step()


def data_fingerprint(folder: Path) -> str:
    """Hash of the exported tensors a model was trained on."""
    parts = [sha256_file(folder / name) for name in ("meta.json", "features.npy", "labels.npy")]
    return sha256_bytes("".join(parts).encode())[:16]


def open_live(folder: Path):
    """A dvclive logger writing into `folder`, or None (with a warning) where it cannot start,
    for example in a git repository without commits."""
    from dvclive import Live

    try:
        return Live(dir=str(folder), dvcyaml=False, save_dvc_exp=False)
    except Exception as exc:  # dvclive surfaces git/DVC problems as several types
        warnings.warn(f"dvclive disabled: {str(exc).splitlines()[0]}")
        return None


def move_checkpoints(work: Path, out: Path) -> None:
    """Move every checkpoint file from the working folder into the output, then drop the folder."""
    for path in sorted(work.glob("*.pt")) + sorted(work.glob("*.json")):
        shutil.move(str(path), out / path.name)
    shutil.rmtree(work, ignore_errors=True)
