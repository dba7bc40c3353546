"""Self-describing checkpoints that load without executing pickled code.

A checkpoint is two files: `<name>.pt`, tensors and plain values saved by `torch.save` and read
back with `torch.load(weights_only=True)`, and `<name>.json`, its metadata: model config,
ordered feature and target registries, params hash, data fingerprint and the SHA-256 of the
`.pt` file, checked before loading so a truncated or altered file is refused.
"""
from __future__ import annotations

from pathlib import Path

import torch

from spreadcast.io import atomic_path, read_json, sha256_file, write_json
from spreadcast.model.net import ModelConfig, SpreadTransformer


class CheckpointError(ValueError):
    pass


def save(path: str | Path, state: dict, meta: dict) -> None:
    """Write `<path>.pt` then `<path>.json` (the metadata file names the weights' hash)."""
    path = Path(path)
    weights = path.with_suffix(".pt")
    with atomic_path(weights) as tmp:
        torch.save(state, tmp)
    write_json(path.with_suffix(".json"), {**meta, "sha256": sha256_file(weights)})


def load(path: str | Path) -> tuple[dict, dict]:
    """Verify and load a checkpoint; returns (state, meta)."""
    path = Path(path)
    weights, meta_path = path.with_suffix(".pt"), path.with_suffix(".json")
    for p in (weights, meta_path):
        if not p.is_file():
            raise CheckpointError(f"{p}: checkpoint file not found")
    try:
        meta = read_json(meta_path)
    except ValueError as exc:
        raise CheckpointError(f"{meta_path}: unreadable checkpoint metadata ({exc})") from None
    digest = sha256_file(weights)
    if meta.get("sha256") != digest:
        raise CheckpointError(f"{weights}: content hash {digest[:12]} does not match its metadata "
                              f"({str(meta.get('sha256'))[:12]}); file truncated or altered")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt archives
        raise CheckpointError(f"{weights}: cannot be loaded safely ({str(exc).splitlines()[0]})") from None
    return state, meta


def build_model(meta: dict) -> SpreadTransformer:
    return SpreadTransformer(ModelConfig(**meta["model"]))


def remap_inputs(state: dict, old_features: list[str], new_features: list[str]) -> dict:
    """Copy the gate and input-projection weights of features kept by name; others start at zero."""
    index = {f: i for i, f in enumerate(old_features)}
    keep = [index.get(f) for f in new_features]
    out = dict(state)
    n_old = len(old_features)
    logit = state["gate.logit"]
    weight = state["input.weight"]                            # (C, 2 * F_old): values then masks
    new_logit = torch.full((len(new_features),), 2.0, dtype=logit.dtype)
    new_weight = torch.zeros(weight.shape[0], 2 * len(new_features), dtype=weight.dtype)
    for j, i in enumerate(keep):
        if i is None:
            continue
        new_logit[j] = logit[i]
        new_weight[:, j] = weight[:, i]
        new_weight[:, len(new_features) + j] = weight[:, n_old + i]
    out["gate.logit"] = new_logit
    out["input.weight"] = new_weight
    return out
