"""Self-describing checkpoints that load without executing pickled code.

A checkpoint is two files: `<name>.pt`, tensors and plain values saved by `torch.save` and read
back with `torch.load(weights_only=True)`, and `<name>.json`, its metadata: model config,
ordered feature and target registries, params hash, data fingerprint and the SHA-256 of the
`.pt` file, checked before loading so a truncated or altered file is refused.
"""
from __future__ import annotations

from pathlib import Path

import torch

from spreadcast.errors import CheckpointError
from spreadcast.io import atomic_path, read_json, sha256_file, write_json
from spreadcast.model.net import ModelConfig, SpreadTransformer


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


# Parameters with a per-feature axis: name -> (axis, blocks laid out along it, value for new features).
# The input projection sees [gated values, missing mask], so its feature axis holds two blocks.
FEATURE_AXES = {"gate.logit": (0, 1, 2.0), "input.weight": (1, 2, 0.0), "skip.weight": (1, 1, 0.0)}


def remap_inputs(state: dict, old_features: list[str], new_features: list[str]) -> dict:
    """Copy per-feature weights of features kept by name; new features start at the fill value."""
    index = {f: i for i, f in enumerate(old_features)}
    n_old, n_new = len(old_features), len(new_features)
    pairs = [(j, index[f]) for j, f in enumerate(new_features) if f in index]
    out = dict(state)
    for name, (axis, blocks, fill) in FEATURE_AXES.items():
        if name not in state:
            continue
        old = state[name].movedim(axis, 0)
        new = torch.full((blocks * n_new, *old.shape[1:]), fill, dtype=old.dtype)
        for b in range(blocks):
            for j, i in pairs:
                new[b * n_new + j] = old[b * n_old + i]
        out[name] = new.movedim(0, axis).contiguous()
    return out
