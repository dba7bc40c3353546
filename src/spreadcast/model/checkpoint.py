"""Self-describing checkpoints that load without executing pickled code.

A checkpoint is two files: `<name>.pt`, tensors and plain values saved by `torch.save` and read
back with `torch.load(weights_only=True)`, and `<name>.json`, its metadata: model config,
ordered feature and target registries, params hash, data fingerprint and the SHA-256 of the
`.pt` file, checked before loading so a truncated or altered file is refused.

The pair is replaced crash-consistently: the new metadata is first written to
`<name>.json.next`, then the weights are renamed into place, then the metadata. A process killed
between the two renames leaves new weights whose hash `<name>.json.next` names; `load` finishes
that rename instead of refusing a checkpoint that is whole.
"""
from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import torch

from spreadcast.errors import CheckpointError
from spreadcast.io import atomic_path, read_json, sha256_bytes, sha256_file, write_json
from spreadcast.model.net import ModelConfig, SpreadTransformer


def save(path: str | Path, state: dict, meta: dict) -> None:
    """Write `<path>.pt` and `<path>.json` (the metadata file names the weights' hash)."""
    path = Path(path)
    weights = path.with_suffix(".pt")
    weights.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()        # saved through a buffer, the archive's inner folder has a fixed name
    torch.save(_canonical(state), buffer)
    data = buffer.getvalue()
    pending = _pending(path)
    write_json(pending, {**meta, "sha256": sha256_bytes(data)})
    with atomic_path(weights) as tmp:
        tmp.write_bytes(data)
    os.replace(pending, path.with_suffix(".json"))


def _pending(path: Path) -> Path:
    return path.with_suffix(".json.next")


def _canonical(obj):
    """A copy whose pickle depends only on the values, so equal states give equal bytes.

    Pickle writes a repeated object as a back-reference; which strings are the same object
    depends on history (literals are interned, loaded ones are not), so a resumed run would
    otherwise save a different file, and DVC hash, than an uninterrupted one.
    """
    if isinstance(obj, dict):
        return {_canonical(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_canonical(v) for v in obj)
    if isinstance(obj, str):
        return sys.intern(obj)
    return obj


def load(path: str | Path) -> tuple[dict, dict]:
    """Verify and load a checkpoint; returns (state, meta)."""
    path = Path(path)
    weights, meta_path = path.with_suffix(".pt"), path.with_suffix(".json")
    if not weights.is_file():
        raise CheckpointError(f"{weights}: checkpoint file not found")
    digest = sha256_file(weights)
    _finish_interrupted_save(path, digest)
    if not meta_path.is_file():
        raise CheckpointError(f"{meta_path}: checkpoint file not found")
    try:
        meta = read_json(meta_path)
    except ValueError as exc:
        raise CheckpointError(f"{meta_path}: unreadable checkpoint metadata ({exc})") from None
    if meta.get("sha256") != digest:
        raise CheckpointError(f"{weights}: content hash {digest[:12]} does not match its metadata "
                              f"({str(meta.get('sha256'))[:12]}); file truncated or altered")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt archives
        raise CheckpointError(f"{weights}: cannot be loaded safely ({str(exc).splitlines()[0]})") from None
    return state, meta


def _finish_interrupted_save(path: Path, digest: str) -> None:
    """Promote `<name>.json.next` when it names the weights on disk (a save killed between renames)."""
    pending = _pending(path)
    if not pending.is_file():
        return
    try:
        names_these_weights = read_json(pending).get("sha256") == digest
    except ValueError:                      # killed while writing it: the old pair is still whole
        names_these_weights = False
    if names_these_weights:
        os.replace(pending, path.with_suffix(".json"))
    else:
        pending.unlink(missing_ok=True)


def build_model(meta: dict) -> SpreadTransformer:
    return SpreadTransformer(ModelConfig(**meta["model"]))


# Architecture fields that must agree before any weight is copied. n_features and n_targets may
# differ: those axes are remapped by name.
ARCH_FIELDS = ("history", "d_model", "n_heads", "n_layers", "ff_mult", "time2vec_dim", "positional",
               "skip_decays")

# Parameters with a per-feature axis: name -> the axis. Along it lie one or more blocks of
# features: the input projection sees [gated values, missing mask] (two blocks), the linear
# path one block per decayed average.
FEATURE_AXES = {"gate.logit": 0, "input.weight": 1, "skip.weight": 1}
# Parameters with a per-target axis: the head emits [forecast, score], two blocks of targets.
TARGET_AXES = {"head.weight": 0, "head.bias": 0, "skip.weight": 0}
INIT_POLICIES = ("zero", "normal", "kaiming")


def check_compatible(saved: dict, model_cfg: dict, where: str) -> None:
    """Fail before touching any weight if an architecture field differs."""
    for name in ARCH_FIELDS:
        if json.loads(json.dumps(saved.get(name))) != json.loads(json.dumps(model_cfg.get(name))):
            raise CheckpointError(f"{where}: architecture field {name!r} differs: checkpoint has "
                                  f"{saved.get(name)!r}, the model has {model_cfg.get(name)!r}")


def describe(old: list[str], new: list[str]) -> dict:
    """Kept, dropped and added names, and whether the kept ones changed order."""
    old_set, new_set = set(old), set(new)
    kept_old = [n for n in old if n in new_set]
    kept_new = [n for n in new if n in old_set]
    return {"kept": len(kept_new), "dropped": [n for n in old if n not in new_set],
            "added": [n for n in new if n not in old_set], "reordered": kept_old != kept_new}


def _remap_axis(name: str, tensor: torch.Tensor, axis: int, old: list[str], new: list[str],
                fill) -> torch.Tensor:
    index = {f: i for i, f in enumerate(old)}
    moved = tensor.movedim(axis, 0)
    blocks = moved.shape[0] // max(1, len(old))
    if blocks * len(old) != moved.shape[0]:
        raise CheckpointError(f"{name}: axis {axis} has {moved.shape[0]} entries, "
                              f"not a multiple of the {len(old)} names saved with it")
    out = fill((blocks * len(new), *moved.shape[1:]), moved.dtype)
    for b in range(blocks):
        for j, name in enumerate(new):
            i = index.get(name)
            if i is not None:
                out[b * len(new) + j] = moved[b * len(old) + i]
    return out.movedim(0, axis).contiguous()


def _filler(name: str, policy: str, fan_in: int):
    """New rows: the gate opens at its usual start; weights by the chosen policy."""
    def fill(shape, dtype):
        if name == "gate.logit":
            return torch.full(shape, 2.0, dtype=dtype)
        if policy == "zero" or name.endswith("bias"):
            return torch.zeros(shape, dtype=dtype)
        if policy == "normal":
            return 0.02 * torch.randn(shape, dtype=dtype)
        bound = (6.0 / max(1, fan_in)) ** 0.5 / 2 ** 0.5      # kaiming-uniform, gain for linear
        return (torch.rand(shape, dtype=dtype) * 2 - 1) * bound
    return fill


def remap(state: dict, old_features: list[str], new_features: list[str], old_targets: list[str],
          new_targets: list[str], init: str = "zero", rescale: bool = False) -> dict:
    """Map per-feature and per-target weights by name; other weights are copied as they are.

    Kept rows and columns are copied, dropped ones removed, new ones initialised by `init`.
    With `rescale`, copied input-projection weights are scaled by sqrt(old / new inputs) so the
    projection keeps its output scale when the number of inputs changes.
    """
    if init not in INIT_POLICIES:
        raise CheckpointError(f"init policy {init!r} is not one of {list(INIT_POLICIES)}")
    out = dict(state)
    for name, axis in FEATURE_AXES.items():
        if name in out:
            fan_in = out[name].shape[1 - axis] if out[name].ndim == 2 else 1
            out[name] = _remap_axis(name, out[name], axis, old_features, new_features,
                                    _filler(name, init, fan_in))
    if rescale and len(new_features) and "input.weight" in out:
        out["input.weight"] = out["input.weight"] * (len(old_features) / len(new_features)) ** 0.5
    for name, axis in TARGET_AXES.items():
        if name in out:
            fan_in = out[name].shape[1] if out[name].ndim == 2 else 1
            out[name] = _remap_axis(name, out[name], axis, old_targets, new_targets,
                                    _filler(name, init, fan_in))
    return out


def load_into(path: str | Path, model: SpreadTransformer, features: list[str], targets: list[str],
              init: str = "zero", rescale: bool = False) -> dict:
    """Load a checkpoint into `model` (whose inputs/targets may differ) by name; returns the
    load summary: architecture and the input and output differences."""
    state, meta = load(path)
    model_cfg = model.cfg.to_dict()
    check_compatible(meta["model"], model_cfg, str(Path(path).with_suffix(".pt")))
    remapped = remap(state["model"], meta["features"], features, meta["targets"], targets, init, rescale)
    model.load_state_dict(remapped)
    return {"checkpoint": str(Path(path).with_suffix(".pt")),
            "architecture": {k: model_cfg[k] for k in ARCH_FIELDS},
            "features": describe(meta["features"], features),
            "targets": describe(meta["targets"], targets),
            "init": init, "rescale": rescale}
