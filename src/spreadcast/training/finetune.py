"""Fine-tune a lag head on its pruned inputs, keeping the unpruned model if that is better.

The reduced model is built from the trained checkpoint's config with fewer inputs, its
weights are copied by feature name, and a fresh optimiser and schedule are built by `fit`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from spreadcast.config import FinetuneConfig, TrainConfig
from spreadcast.model import checkpoint
from spreadcast.model.net import ModelConfig, SpreadTransformer
from spreadcast.training.loop import evaluate_head, fit, head_data


def finetune(trained: Path, kept: list[str], tensors, lag: int, train_cfg: TrainConfig,
             cfg: FinetuneConfig, out: Path, live=None) -> dict:
    state, meta = checkpoint.load(trained / "best")
    old = SpreadTransformer(ModelConfig(**meta["model"]))
    old.load_state_dict(state["model"])
    unpruned = evaluate_head(old, head_data(tensors, lag, meta["features"]), tensors.splits.val,
                             train_cfg.batch_size)

    mcfg = dataclasses.replace(ModelConfig(**meta["model"]), n_features=len(kept))
    torch.manual_seed(train_cfg.seed)
    model = SpreadTransformer(mcfg)
    model.load_state_dict(checkpoint.remap_inputs(state["model"], meta["features"], kept))
    new_meta = {**meta, "model": mcfg.to_dict(), "features": kept}
    summary = fit(model, head_data(tensors, lag, kept), train_cfg, out, new_meta,
                  live=live, epochs=cfg.epochs, lr=cfg.lr)
    pruned = summary["val"]
    keep_unpruned = pruned["sharpe"] < unpruned["sharpe"] - cfg.tolerance
    if keep_unpruned:
        print(f"  fine-tuned val Sharpe {pruned['sharpe']:+.3f} is below the unpruned "
              f"{unpruned['sharpe']:+.3f} - {cfg.tolerance}: keeping the unpruned model", flush=True)
        checkpoint.save(out / "model", {"model": state["model"]}, meta)
    else:
        best_state, best_meta = checkpoint.load(out / "best")
        checkpoint.save(out / "model", {"model": best_state["model"]}, best_meta)
    return {"unpruned_val": unpruned, "finetuned_val": pruned, "kept_unpruned": bool(keep_unpruned),
            "features": len(meta["features"] if keep_unpruned else kept), "epochs_run": summary["epochs_run"]}
