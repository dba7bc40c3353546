"""Fine-tune a lag head on its pruned inputs, keeping the unpruned model if that is better.

The reduced model is built from the trained checkpoint's architecture with the pruned inputs
(and the current targets), its weights are mapped by name (`checkpoint.load_into`), and `fit`
builds a fresh optimiser, schedule and grad scaler, so no moment is stale or missing.
With `linear_start_alpha`, the linear path is first re-solved on the kept inputs in closed form
(ridge on the training rows): with few inputs that fit is well posed, and it replaces weights
that were shared out among correlated inputs now dropped.
IO warm-up: for the first `warmup_epochs` the backbone is frozen while the gate, the input
projection and the heads adapt; then blocks are unfrozen from the top, one more per epoch
(`unfreeze: staged`), or all at once (`unfreeze: all`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from spreadcast.config import FinetuneConfig, TrainConfig
from spreadcast.features.windows import head_data
from spreadcast.io import write_json
from spreadcast.model import checkpoint
from spreadcast.model.net import ModelConfig, SpreadTransformer
from spreadcast.training import linear
from spreadcast.training.distributed import SINGLE, Context
from spreadcast.training.loop import evaluate_head, fit


def io_warmup(cfg: FinetuneConfig):
    """The per-epoch freezing schedule of the backbone."""
    def apply(epoch: int, model: SpreadTransformer) -> None:
        blocks = list(model.blocks)
        if epoch < cfg.warmup_epochs:
            open_blocks = 0
        elif cfg.unfreeze == "staged":
            open_blocks = min(len(blocks), epoch - cfg.warmup_epochs + 1)
        else:
            open_blocks = len(blocks)
        for i, block in enumerate(blocks):
            block.requires_grad_(i >= len(blocks) - open_blocks)
        lower_open = open_blocks == len(blocks)
        for part in (model.time2vec, model.time_proj):
            part.requires_grad_(lower_open)
        if model.position is not None:
            model.position.requires_grad_(lower_open)
        model.norm.requires_grad_(open_blocks > 0)
    return apply


def finetune(trained: Path, kept: list[str], tensors, lag: int, train_cfg: TrainConfig,
             cfg: FinetuneConfig, out: Path, live=None, ctx: Context = SINGLE,
             device: torch.device | None = None) -> dict:
    """Fine-tune the head in `trained` on the `kept` features; checkpoints go to `out`.

    Under several processes (`ctx`) every rank trains its share and rank 0 alone writes."""
    state, meta = checkpoint.load(trained / "best")
    old = SpreadTransformer(ModelConfig(**meta["model"]))
    old.load_state_dict(state["model"])
    unpruned = evaluate_head(old, head_data(tensors, lag, meta["features"]), tensors.splits.val,
                             train_cfg.batch_size)

    targets = [tensors.target_names[j] for j in tensors.head(lag)]
    mcfg = dataclasses.replace(ModelConfig(**meta["model"]), n_features=len(kept), n_targets=len(targets))
    torch.manual_seed(train_cfg.seed)
    model = SpreadTransformer(mcfg)
    loaded = checkpoint.load_into(trained / "best", model, kept, targets, cfg.init, cfg.rescale)
    if device is not None:
        model.to(device)
    data = head_data(tensors, lag, kept)
    if cfg.linear_start_alpha > 0:             # the kept inputs' own least-squares linear path
        linear.ridge_start(model, data.windows, data.train_rows, cfg.linear_start_alpha)
    f, t = loaded["features"], loaded["targets"]
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "load_summary.json", loaded)
        print(f"  loaded {loaded['checkpoint']}: features kept {f['kept']}, dropped {len(f['dropped'])}, "
              f"added {len(f['added'])}{', reordered' if f['reordered'] else ''}; targets kept {t['kept']}, "
              f"dropped {len(t['dropped'])}, added {len(t['added'])}{', reordered' if t['reordered'] else ''}",
              flush=True)
    groups = None
    if t["added"]:
        new = torch.tensor([name in set(t["added"]) for name in targets])
        groups = {"kept": ~new, "new": new}
    new_meta = {**meta, "model": mcfg.to_dict(), "features": kept, "targets": targets}
    summary = fit(model, data, train_cfg, out, new_meta, live=live,
                  epochs=cfg.epochs, lr=cfg.lr, on_epoch=io_warmup(cfg), groups=groups, ctx=ctx)
    pruned = summary["val"]
    keep_unpruned = pruned["sharpe"] < unpruned["sharpe"] - cfg.tolerance
    if ctx.main and keep_unpruned:
        print(f"  fine-tuned val Sharpe {pruned['sharpe']:+.3f} is below the unpruned "
              f"{unpruned['sharpe']:+.3f} - {cfg.tolerance}: keeping the unpruned model", flush=True)
        checkpoint.save(out / "model", {"model": state["model"]}, meta)
    elif ctx.main:
        best_state, best_meta = checkpoint.load(out / "best")
        checkpoint.save(out / "model", {"model": best_state["model"]}, best_meta)
    return {"unpruned_val": unpruned, "finetuned_val": pruned, "kept_unpruned": bool(keep_unpruned),
            "features": len(meta["features"] if keep_unpruned else kept), "epochs_run": summary["epochs_run"],
            "load": loaded}


def refit(final: Path, tensors, lag: int, train_cfg: TrainConfig, epochs: int, out: Path,
          linear_start_alpha: float = 0.0, start: str = "scratch", lr: float | None = None
          ) -> tuple[SpreadTransformer, dict]:
    """Retrain the selected configuration of a head on every labelled day.

    The architecture and inputs are those of the final model. `start="scratch"` trains it anew
    for `epochs` (the number validation chose for training); with `linear_start_alpha` the
    linear path starts at its ridge fit on those days, as in fine-tuning. `start="final"` goes on
    from the final model's weights for `epochs` (the number validation chose for fine-tuning) at
    `lr`, so the served model keeps what training and fine-tuning found and adds the days after
    the training fold. There is no held-out day left, so the last epoch is kept; the reported
    validation numbers are in-sample and only show that training ran.
    """
    state, meta = checkpoint.load(final)
    torch.manual_seed(train_cfg.seed)
    model = SpreadTransformer(ModelConfig(**meta["model"]))
    data = head_data(tensors, lag, meta["features"])
    splits = tensors.splits
    data.train_rows = np.concatenate([splits.train, splits.val, splits.holdout])
    data.val_rows = splits.holdout
    if start == "final":
        model.load_state_dict(state["model"])
    elif linear_start_alpha > 0:
        linear.ridge_start(model, data.windows, data.train_rows, linear_start_alpha)
    cfg = dataclasses.replace(train_cfg, patience=epochs + 1)
    meta = {**meta, "refit": True, "refit_start": start}
    fit(model, data, cfg, out, meta, epochs=epochs, lr=lr, keep="last")
    return model, meta
