"""Name-based checkpoint remapping: shrink, grow, reorder, mismatch, and fine-tuning on top."""
import os

import numpy as np
import pytest
import torch

from spreadcast.config import FinetuneConfig, TrainConfig
from spreadcast.errors import CheckpointError
from spreadcast.features.windows import HeadData, Windows
from spreadcast.model import checkpoint
from spreadcast.model.net import ModelConfig, SpreadTransformer
from spreadcast.training import loop
from spreadcast.training.finetune import io_warmup

FEATURES = list("abcdef")
TARGETS = ["t0", "t1", "t2", "t3"]


def model_for(n_features, n_targets, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(n_features=n_features, n_targets=n_targets, history=5, d_model=16, n_heads=2,
                      n_layers=2, **kw)
    return SpreadTransformer(cfg)


@pytest.fixture
def saved(tmp_path):
    model = model_for(len(FEATURES), len(TARGETS)).eval()
    with torch.no_grad():                      # make the skip path and head non-trivial
        model.skip.weight.normal_()
    meta = {"model": model.cfg.to_dict(), "features": FEATURES, "targets": TARGETS}
    checkpoint.save(tmp_path / "best", {"model": model.state_dict()}, meta)
    return tmp_path / "best", model


def inputs(features, seed=1):
    g = torch.Generator().manual_seed(seed)
    base = {f: torch.randn(3, 5, generator=g) for f in FEATURES + ["new1", "new2"]}
    x = torch.stack([base[f] for f in features], dim=-1)
    return x, torch.zeros_like(x)


def test_grow_keeps_old_outputs_and_new_rows_start_at_zero(saved):
    path, old = saved
    features, targets = FEATURES + ["new1"], TARGETS + ["t_new"]
    model = model_for(len(features), len(targets), seed=5).eval()
    summary = checkpoint.load_into(path, model, features, targets)
    assert summary["features"] == {"kept": 6, "dropped": [], "added": ["new1"], "reordered": False}
    assert summary["targets"]["added"] == ["t_new"]
    f_old, s_old = old(*inputs(FEATURES))
    f_new, s_new = model(*inputs(features))
    torch.testing.assert_close(f_new[:, :4], f_old)
    torch.testing.assert_close(s_new[:, :4], s_old)
    assert (model.input.weight[:, 6] == 0).all() and (model.head.weight[4] == 0).all()


def test_shrink_copies_kept_weights(saved):
    path, old = saved
    features = ["b", "e"]
    model = model_for(2, 2, seed=5)
    summary = checkpoint.load_into(path, model, features, ["t3", "t1"])
    assert summary["features"]["dropped"] == ["a", "c", "d", "f"]
    assert summary["targets"] == {"kept": 2, "dropped": ["t0", "t2"], "added": [], "reordered": True}
    torch.testing.assert_close(model.input.weight[:, 0], old.input.weight[:, 1])
    torch.testing.assert_close(model.input.weight[:, 3], old.input.weight[:, 6 + 4])   # mask of 'e'
    torch.testing.assert_close(model.head.weight[0], old.head.weight[3])
    torch.testing.assert_close(model.head.weight[2 + 1], old.head.weight[4 + 1])      # score of t1
    torch.testing.assert_close(model.skip.weight[1, 1], old.skip.weight[1, 4])


def test_reorder_is_detected_as_reorder_and_outputs_follow(saved):
    path, old = saved
    features = ["f", "e", "d", "c", "b", "a"]
    model = model_for(6, 4, seed=5).eval()
    summary = checkpoint.load_into(path, model, features, TARGETS)
    assert summary["features"] == {"kept": 6, "dropped": [], "added": [], "reordered": True}
    torch.testing.assert_close(model(*inputs(features))[0], old(*inputs(FEATURES))[0])


@pytest.mark.parametrize("field,value", [("d_model", 32), ("n_layers", 3), ("history", 7)])
def test_architecture_mismatch_fails_before_loading(saved, field, value):
    path, _ = saved
    kwargs = {"n_features": 6, "n_targets": 4, "history": 5, "d_model": 16, "n_heads": 2, "n_layers": 2}
    kwargs[field] = value
    model = SpreadTransformer(ModelConfig(**kwargs))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=rf"architecture field '{field}' differs: checkpoint has \d+, "
                                              rf"the model has {value}"):
        checkpoint.load_into(path, model, FEATURES, TARGETS)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_several_linear_path_averages_are_remapped_block_by_block(tmp_path):
    old = model_for(len(FEATURES), len(TARGETS), skip_decays=(0.0, 0.8)).eval()
    with torch.no_grad():
        old.skip.weight.normal_()
    meta = {"model": old.cfg.to_dict(), "features": FEATURES, "targets": TARGETS}
    checkpoint.save(tmp_path / "best", {"model": old.state_dict()}, meta)
    _, loaded = checkpoint.load(tmp_path / "best")
    assert loaded["model"]["skip_decays"] == [0.0, 0.8]       # JSON list, still compatible below

    model = model_for(2, 4, seed=5, skip_decays=(0.0, 0.8))
    checkpoint.load_into(tmp_path / "best", model, ["b", "e"], TARGETS)
    torch.testing.assert_close(model.skip.weight[:, 1], old.skip.weight[:, 4])          # 'e', last day
    torch.testing.assert_close(model.skip.weight[:, 2 + 1], old.skip.weight[:, 6 + 4])  # 'e', decayed

    grown = model_for(7, 4, seed=5, skip_decays=(0.0, 0.8)).eval()
    checkpoint.load_into(tmp_path / "best", grown, FEATURES + ["new1"], TARGETS)
    assert (grown.skip.weight[:, [6, 7 + 6]] == 0).all()
    torch.testing.assert_close(grown(*inputs(FEATURES + ["new1"]))[0], old(*inputs(FEATURES))[0])

    other = model_for(6, 4, skip_decays=(0.0, 0.8, 0.95))
    with pytest.raises(CheckpointError, match="architecture field 'skip_decays' differs"):
        checkpoint.load_into(tmp_path / "best", other, FEATURES, TARGETS)


@pytest.mark.parametrize("init", ["normal", "kaiming"])
def test_init_policies_fill_new_rows(saved, init):
    path, _ = saved
    model = model_for(7, 4)
    checkpoint.load_into(path, model, FEATURES + ["new1"], TARGETS, init=init)
    assert model.input.weight[:, 6].abs().sum() > 0


def test_unknown_init_policy(saved):
    path, _ = saved
    with pytest.raises(CheckpointError, match="init policy 'ones' is not one of"):
        checkpoint.load_into(path, model_for(6, 4), FEATURES, TARGETS, init="ones")


def head_data(features, targets, days=120, history=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((days, len(features))).astype(np.float32)
    y = (x[:, :1] + rng.standard_normal((days, len(targets)))).astype(np.float32)
    windows = Windows(torch.from_numpy(x), torch.zeros(days, len(features)), torch.from_numpy(y), history)
    rows = np.arange(history - 1, days)
    return HeadData(windows=windows, train_rows=rows[:80], val_rows=rows[86:],
                         target_scale=torch.ones(len(targets)), raw_labels=y.astype(np.float64))


CFG = TrainConfig(d_model=16, n_heads=2, n_layers=2, epochs=4, batch_size=16, lr=3e-3, patience=10)


def grown_model(path):
    features, targets = FEATURES + ["new1"], TARGETS + ["t_new"]
    model = model_for(len(features), len(targets), seed=5)
    checkpoint.load_into(path, model, features, targets)
    return model, features, targets


def test_rebuilt_optimiser_matches_new_shapes_and_warmup_freezes_backbone(saved, tmp_path):
    path, _ = saved
    model, features, targets = grown_model(path)
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    new = torch.tensor([t == "t_new" for t in targets])
    schedule = io_warmup(FinetuneConfig(epochs=4, warmup_epochs=2, unfreeze="staged"))
    after_warmup = {}

    def hook(epoch, m):
        if epoch == 2:
            after_warmup.update({name: p.detach().clone() for name, p in m.named_parameters()})
        schedule(epoch, m)

    summary = loop.fit(model, head_data(features, targets), CFG, tmp_path / "ft", {"model": model.cfg.to_dict()},
                       epochs=4, on_epoch=hook, groups={"kept": ~new, "new": new})
    history = summary["history"]
    trainable = [r["trainable_parameters"] for r in history]
    assert trainable[0] == trainable[1] < trainable[2] < trainable[3]
    assert {"loss_regression_kept", "loss_regression_new"} <= set(history[0])
    # during the warm-up only the gate, input projection and heads moved
    for name in initial:
        moved = not torch.equal(initial[name], after_warmup[name])
        backbone = name.startswith(("blocks.", "time2vec.", "time_proj.", "position", "norm."))
        assert moved == (not backbone), name
    # the lowest block opened in the last epoch: by then it has moved too
    state, _ = checkpoint.load(tmp_path / "ft" / "last")
    assert not torch.equal(initial["blocks.0.attn.qkv.weight"], state["model"]["blocks.0.attn.qkv.weight"])
    # the rebuilt optimiser's moments have the new parameters' shapes
    ordered = [p for group in loop._param_groups(model, 0.0, 1.0, 1.0) for p in group["params"]]
    assert len(state["optimizer"]["state"]) == len(ordered)
    for i, moments in state["optimizer"]["state"].items():
        assert tuple(moments["exp_avg"].shape) == tuple(ordered[i].shape)


def test_resumed_finetune_after_growth_keeps_finite_loss(saved, tmp_path, monkeypatch):
    path, _ = saved
    original = loop.evaluate_head
    calls = {"n": 0}

    def crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    model, features, targets = grown_model(path)
    monkeypatch.setattr(loop, "evaluate_head", crash)
    with pytest.raises(KeyboardInterrupt):
        loop.fit(model, head_data(features, targets), CFG, tmp_path / "ft", {"model": model.cfg.to_dict()})
    monkeypatch.setattr(loop, "evaluate_head", original)
    model, features, targets = grown_model(path)
    summary = loop.fit(model, head_data(features, targets), CFG, tmp_path / "ft", {"model": model.cfg.to_dict()})
    assert len(summary["history"]) == CFG.epochs
    assert all(np.isfinite(r["loss"]) for r in summary["history"])


def test_truncated_or_garbage_checkpoint_gives_clear_error(saved):
    path, _ = saved
    weights = path.with_suffix(".pt")
    weights.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"best\.pt: content hash \w+ does not match its metadata"):
        checkpoint.load_into(path, model_for(6, 4), FEATURES, TARGETS)
    meta = path.with_suffix(".json")
    meta.write_text(meta.read_text().replace('"sha256"', '"sha"'))
    with pytest.raises(CheckpointError, match="does not match its metadata"):
        checkpoint.load(path)
    meta.write_text("{")
    with pytest.raises(CheckpointError, match=r"best\.json: unreadable checkpoint metadata"):
        checkpoint.load(path)


@pytest.mark.parametrize("killed_after", ["pending", "weights"])
def test_save_killed_between_its_renames_leaves_a_loadable_checkpoint(saved, monkeypatch, killed_after):
    """Kill `save` after writing the new metadata aside, or after renaming the new weights in."""
    path, model = saved
    old_state, _ = checkpoint.load(path)
    new_state = {"model": {k: v + 1 for k, v in model.state_dict().items()}}
    steps = {"pending": 1, "weights": 2}[killed_after]     # os.replace calls made before the kill
    real_replace, calls = os.replace, []

    def replace(src, dst):
        if len(calls) == steps:
            raise KeyboardInterrupt("killed")
        calls.append(dst)
        return real_replace(src, dst)

    monkeypatch.setattr("os.replace", replace)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, new_state, {"model": model.cfg.to_dict(), "features": FEATURES,
                                          "targets": TARGETS})
    monkeypatch.undo()
    state, _ = checkpoint.load(path)
    expected = old_state if killed_after == "pending" else new_state
    for name, tensor in expected["model"].items():
        torch.testing.assert_close(state["model"][name], tensor)
    assert not path.with_suffix(".json.next").exists()


def test_refit_trains_on_every_labelled_day(tmp_path):
    from types import SimpleNamespace

    from spreadcast.features.splits import Splits
    from spreadcast.training.finetune import refit

    model = model_for(len(FEATURES), len(TARGETS))
    meta = {"model": model.cfg.to_dict(), "features": FEATURES, "targets": TARGETS}
    checkpoint.save(tmp_path / "final", {"model": model.state_dict()}, meta)
    data = head_data(FEATURES, TARGETS)
    seen = []
    original = data.windows.batch
    data.windows.batch = lambda rows: (seen.append(np.asarray(rows)), original(rows))[1]
    splits = Splits(train=np.arange(4, 60), val=np.arange(66, 90), holdout=np.arange(96, 120))
    tensors = SimpleNamespace(splits=splits, head=lambda lag: np.arange(len(TARGETS)),
                              feature_names=FEATURES, target_scale=np.ones(len(TARGETS)),
                              windows=lambda cols, idx=None: data.windows, raw_labels=data.raw_labels)
    refit(tmp_path / "final", tensors, 1, CFG, epochs=2, out=tmp_path / "refit")
    trained = np.unique(np.concatenate(seen))
    assert {60 - 1, 89, 119} <= set(trained.tolist())      # train, validation and holdout days
    _, saved = checkpoint.load(tmp_path / "refit" / "last")
    assert saved["refit"] is True and saved["epoch"] == 2 and saved["refit_start"] == "scratch"

    # from the final model: its weights, moved by the new days' gradients only
    final = model_for(len(FEATURES), len(TARGETS), seed=CFG.seed + 3).state_dict()
    checkpoint.save(tmp_path / "final2", {"model": final}, meta)
    tiny, _ = refit(tmp_path / "final2", tensors, 1, CFG, epochs=1, out=tmp_path / "from_final", start="final",
                    lr=1e-9)
    fresh, _ = refit(tmp_path / "final2", tensors, 1, CFG, epochs=1, out=tmp_path / "fresh", lr=1e-9)
    moved = {name: (tiny.state_dict()[name] - w).abs().max().item() for name, w in final.items()}
    assert max(moved.values()) < 1e-4
    assert max((fresh.state_dict()[name] - w).abs().max().item() for name, w in final.items()) > 1e-2


class _Payload:
    """An object whose unpickling would run code (here: create a file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_code_with_a_valid_hash_is_refused(tmp_path):
    """A checkpoint whose metadata carries the right hash but whose weights file holds a pickled
    callable is refused by the weights-only loader, and the callable never runs."""
    import json

    from spreadcast.errors import CheckpointError
    from spreadcast.io import sha256_file

    marker = tmp_path / "PWNED"
    torch.save({"model": {}, "payload": _Payload(marker)}, tmp_path / "evil.pt")
    (tmp_path / "evil.json").write_text(json.dumps({"sha256": sha256_file(tmp_path / "evil.pt")}))
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        checkpoint.load(tmp_path / "evil")
    assert not marker.exists()
