"""The training loop: determinism, resume after an interruption, AMP on CPU, diagnostics."""
import dataclasses

import numpy as np
import pytest
import torch

from spreadcast.config import TrainConfig
from spreadcast.errors import CollapseError
from spreadcast.features.windows import HeadData, Windows
from spreadcast.model import checkpoint
from spreadcast.model.net import ModelConfig, SpreadTransformer
from spreadcast.training import loop

CFG = TrainConfig(d_model=16, n_heads=2, n_layers=1, epochs=4, batch_size=16, lr=3e-3, patience=10,
                  warmup_epochs=1, gate_warmup_epochs=1)


def make_data(seed=0, days=160, features=6, targets=5, history=6):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((days, features)).astype(np.float32)
    signal = x[:, :1] @ rng.standard_normal((1, targets))
    y = (signal + rng.standard_normal((days, targets))).astype(np.float32)
    y[rng.random(y.shape) < 0.1] = np.nan
    windows = Windows(torch.from_numpy(x), torch.zeros(days, features), torch.from_numpy(y), history)
    rows = np.arange(history - 1, days)
    return HeadData(windows=windows, train_rows=rows[:100], val_rows=rows[110:],
                         target_scale=torch.ones(targets), raw_labels=y.astype(np.float64))


def make_model(cfg=CFG, features=6, targets=5, history=6):
    torch.manual_seed(cfg.seed)
    return SpreadTransformer(ModelConfig(n_features=features, n_targets=targets, history=history,
                                         d_model=cfg.d_model, n_heads=cfg.n_heads, n_layers=cfg.n_layers))


def run(tmp_path, cfg=CFG, name="run"):
    model = make_model(cfg)
    summary = loop.fit(model, make_data(), cfg, tmp_path / name, {"model": model.cfg.to_dict()})
    return summary


def strip(history):
    return [{k: v for k, v in r.items()} for r in history]


def test_deterministic_by_seed(tmp_path):
    a, b = run(tmp_path, name="a"), run(tmp_path, name="b")
    assert strip(a["history"]) == strip(b["history"])
    assert a["val"] == b["val"]
    assert len(a["history"]) == CFG.epochs
    assert {"share_regression", "share_rank", "share_gate", "val_sharpe", "gate_sparsity"} <= set(a["history"][0])
    shares = a["history"][-1]
    assert shares["share_regression"] + shares["share_rank"] + shares["share_gate"] == pytest.approx(1.0)


def test_an_epoch_with_a_recency_halflife_draws_recent_days_more(tmp_path):
    rows = np.arange(20, 1020)
    every = loop.epoch_order(rows, 0.0, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(np.sort(every), rows)                    # each row once
    drawn = loop.epoch_order(rows, 100.0, torch.Generator().manual_seed(0))
    assert drawn.size == rows.size and set(drawn) <= set(rows)
    # a chance halving every 100 days back: about half the draws from the last 100 days, 1/1000
    # of them from the first 100 (each row once: a tenth of them in each)
    assert 0.45 < np.mean(drawn >= rows[-100]) < 0.55
    assert np.mean(drawn < rows[100]) < 0.01
    np.testing.assert_array_equal(drawn, loop.epoch_order(rows, 100.0, torch.Generator().manual_seed(0)))
    recent = run(tmp_path, dataclasses.replace(CFG, recency_halflife=30.0), name="recent")
    assert len(recent["history"]) == CFG.epochs and np.isfinite(recent["val"]["sharpe"])
    assert recent["history"][0]["loss"] != run(tmp_path, name="uniform")["history"][0]["loss"]


def test_resume_after_interruption_reaches_same_result(tmp_path, monkeypatch):
    reference = run(tmp_path, name="reference")
    original = loop.evaluate_head
    calls = {"n": 0}

    def crash_in_third_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_head", crash_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, name="interrupted")
    monkeypatch.setattr(loop, "evaluate_head", original)
    resumed = run(tmp_path, name="interrupted")
    assert strip(resumed["history"]) == strip(reference["history"])
    assert resumed["val"] == reference["val"]


def test_no_resume_from_another_configuration(tmp_path, capsys):
    run(tmp_path, name="x")
    other = dataclasses.replace(CFG, lr=1e-3)
    summary = run(tmp_path, cfg=other, name="x")
    assert "not resuming" in capsys.readouterr().out
    assert len(summary["history"]) == other.epochs


@pytest.mark.parametrize("favoured", [1, 3])
def test_earlier_periods_curves_move_the_chosen_epoch(tmp_path, favoured):
    """With reference curves (the same configuration's per-epoch Sharpe on earlier folds) the
    best epoch and the `best` checkpoint follow the mean of the validation Sharpe and theirs:
    a reference far higher at one epoch chooses that epoch, whatever validation says; a curve
    shorter than the run counts with its last epoch; without curves, validation alone chooses."""
    alone = run(tmp_path, name="alone")
    by_val = int(np.argmax([r["val_sharpe"] for r in alone["history"]])) + 1
    assert alone["best_epoch"] == by_val and "select_sharpe" not in alone["history"][0]
    curve = [-50.0] * 4
    curve[favoured - 1] = 50.0
    short = curve[:favoured]                                     # stops at the favoured epoch
    model = make_model()
    summary = loop.fit(model, make_data(), CFG, tmp_path / f"ref{favoured}", {"model": model.cfg.to_dict()},
                       reference=[curve, short])
    assert summary["best_epoch"] == favoured
    record = summary["history"][favoured - 1]
    assert record["select_sharpe"] == pytest.approx((record["val_sharpe"] + 100.0) / 3)
    later = summary["history"][-1]                               # the short curve counts with its last value
    if favoured < 4:
        assert later["select_sharpe"] == pytest.approx((later["val_sharpe"] - 50.0 + 50.0) / 3)
    _, meta = checkpoint.load(tmp_path / f"ref{favoured}" / "best")
    assert meta["epoch"] == favoured and meta["val_sharpe"] == pytest.approx(record["val_sharpe"])
    # the same histories of validation Sharpe: the curves change the choice, not the training
    assert [r["val_sharpe"] for r in summary["history"]] == [r["val_sharpe"] for r in alone["history"]]


def test_a_run_kept_for_its_curve_loads_no_checkpoint(tmp_path):
    model = make_model()
    summary = loop.fit(model, make_data(), CFG, tmp_path / "curve", {"model": model.cfg.to_dict()}, keep=None)
    assert len(summary["history"]) == CFG.epochs and summary["val"] == {}
    ended = {k: v.clone() for k, v in model.state_dict().items()}
    state, _ = checkpoint.load(tmp_path / "curve" / "last")
    assert all(torch.equal(ended[k], v) for k, v in state["model"].items())


def test_amp_bf16_on_cpu_and_activation_stats(tmp_path):
    cfg = dataclasses.replace(CFG, amp=True, epochs=2, activation_stats=True, regression_loss="hybrid")
    summary = run(tmp_path, cfg=cfg)
    record = summary["history"][-1]
    assert np.isfinite(record["loss"])
    for key in ("act_encoder_out_std", "act_head_in_mean", "act_head_out_max"):
        assert np.isfinite(record[key])


def test_collapsed_model_fails_with_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "predict", lambda model, windows, rows, *a, **k: np.zeros((len(rows), 5)))
    with pytest.raises(CollapseError, match="final model collapsed"), \
            pytest.warns(UserWarning, match="epoch 1: forecasts collapsed on 45 validation days"):
        run(tmp_path, cfg=dataclasses.replace(CFG, epochs=1))


def test_training_pruning_and_finetuning_never_read_holdout_rows(tiny_project, tmp_path):
    """Every holdout row of the exported tensors changed (features, mask, labels): the lag-1
    head's trained, pruned and fine-tuned weights are the same as the tiny project's."""
    import shutil

    import numpy as np
    import torch

    from conftest import PER_LAG, stage

    art = tmp_path / "artifacts"
    shutil.copytree(tiny_project / "artifacts" / "tensors", art / "tensors")
    for k in (2, 3, 4):                                  # the other heads, for pooled pruning
        shutil.copytree(tiny_project / "artifacts" / "train" / f"lag{k}", art / "train" / f"lag{k}")
    shutil.copy(tiny_project / "params.yaml", tmp_path / "params.yaml")
    holdout = np.load(art / "tensors" / "holdout_rows.npy")
    assert holdout.size > 0
    for name, change in (("features", lambda a: a + 1.0), ("missing", lambda a: 1.0 - a),
                         ("labels", lambda a: -a - 1.0), ("raw_labels", lambda a: -a - 1.0)):
        array = np.load(art / "tensors" / f"{name}.npy")
        array[holdout] = change(array[holdout])
        np.save(art / "tensors" / f"{name}.npy", array)
    for command in PER_LAG:
        stage(command, tmp_path / "params.yaml", in_process=True, d=str(art), k=1)
    for folder, name in (("train/lag1", "best.pt"), ("finetune/lag1", "model.pt")):
        ours = torch.load(art / folder / name, weights_only=True)["model"]
        theirs = torch.load(tiny_project / "artifacts" / folder / name, weights_only=True)["model"]
        assert ours.keys() == theirs.keys()
        for key in ours:
            torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0, msg=f"{folder} {key}")


def train_lag1(tiny_project, root, **train):
    """The train stage of the lag-1 head, run on the tiny project's tensors copied to `root` with
    `train` settings: (the project, its params, the command, the finished run)."""
    import subprocess
    import sys

    from conftest import ROOT, tensors_project

    project, params = tensors_project(tiny_project, root, **train)
    argv = [sys.executable, str(ROOT / "stages" / "train.py"), "--lag", "1", "--tensors", "artifacts/tensors",
            "--out", "artifacts/train", "--metrics", "artifacts/train.json", "--work", "artifacts/.work/train"]
    done = subprocess.run(argv, cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return project, params, argv, done


def test_train_stage_chooses_epochs_with_a_walk_forward_fold(tiny_project, tmp_path):
    """`train.epoch_folds: 1`: the stage trains the head's configuration on the last fold's
    fitting days first, records its per-epoch Sharpe on the fold, and the head's best epoch is
    the one with the best mean of that curve and the validation Sharpe. More folds than
    `walkforward.folds` is refused, naming the key."""
    import json
    import subprocess

    import yaml

    project, params, argv, done = train_lag1(tiny_project, tmp_path / "p", epochs=4, patience=4, epoch_folds=1,
                                             evidence_folds=0)
    assert "walk-forward fold" in done.stdout
    metrics = json.loads((project / "artifacts" / "train.json").read_text())
    (fold,) = metrics["epoch_folds"]
    assert fold["fold"] == params["walkforward"]["folds"] and 1 <= len(fold["curve"]) <= 4
    _, meta = checkpoint.load(project / "artifacts" / "train" / "best")
    assert meta["reference"] == [fold["curve"]] and meta["epoch"] == metrics["best_epoch"]
    state, _ = checkpoint.load(project / "artifacts" / "train" / "last")
    history, curve = state["progress"]["history"], fold["curve"]
    mean = [(r["val_sharpe"] + curve[min(i, len(curve) - 1)]) / 2 for i, r in enumerate(history)]
    assert [r["select_sharpe"] for r in history] == pytest.approx(mean)
    assert metrics["best_epoch"] == int(np.argmax(mean)) + 1
    assert not (project / "artifacts" / ".work" / "train").exists()        # fold checkpoints gone with the rest
    params["train"]["epoch_folds"] = params["walkforward"]["folds"] + 1
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    refused = subprocess.run(argv, cwd=project, capture_output=True, text=True)
    assert refused.returncode != 0 and "train.epoch_folds" in refused.stderr


def test_a_run_stopped_at_an_epoch_is_the_full_run_at_that_epoch(tmp_path):
    """`stop_at=2` trains two epochs of the four-epoch schedule: the weights equal those of the
    uninterrupted run after its second epoch (the learning rate did not follow a shorter schedule)."""
    seen = {}

    def catch(epoch, model):
        if epoch == 2:                                   # before the third epoch: two epochs trained
            seen.update({k: v.clone() for k, v in model.state_dict().items()})

    full = make_model()
    loop.fit(full, make_data(), CFG, tmp_path / "full", {"model": full.cfg.to_dict()}, on_epoch=catch, keep=None)
    stopped = make_model()
    summary = loop.fit(stopped, make_data(), CFG, tmp_path / "stopped", {"model": stopped.cfg.to_dict()},
                       keep=None, stop_at=2)
    assert len(summary["history"]) == 2
    for key, value in stopped.state_dict().items():
        torch.testing.assert_close(value, seen[key], rtol=0, atol=0, msg=key)
    shorter = make_model()
    loop.fit(shorter, make_data(), dataclasses.replace(CFG, epochs=2), tmp_path / "shorter",
             {"model": shorter.cfg.to_dict()}, keep=None)
    assert any(not torch.equal(v, seen[k]) for k, v in shorter.state_dict().items())


def test_train_stage_forecasts_the_last_folds_for_the_blend(tiny_project, tmp_path):
    """`train.evidence_folds: 2`: after the head, its configuration trains on each of the last two
    folds' fitting days for the head's chosen epochs and forecasts the fold's days, saved with
    their dates under --out/evidence. Those forecasts read no label of the fold's days or
    later (changing every such label leaves them the same). More folds than `walkforward.folds`
    is refused, naming the key."""
    import importlib.util
    import json
    import subprocess

    import yaml

    from conftest import ROOT
    from spreadcast.evaluation.walkforward import embargo_of, folds
    from spreadcast.features import windows
    from spreadcast.training import distributed

    project, params, argv, done = train_lag1(tiny_project, tmp_path / "p", epochs=3, patience=3, evidence_folds=2)
    assert "for the blend's evidence" in done.stdout
    metrics = json.loads((project / "artifacts" / "train.json").read_text())
    n_folds = params["walkforward"]["folds"]
    assert [e["fold"] for e in metrics["evidence_folds"]] == [n_folds - 1, n_folds]
    assert all(e["epochs"] == metrics["best_epoch"] for e in metrics["evidence_folds"])
    tensors = windows.load(project / "artifacts" / "tensors")
    splits = folds(tensors.splits.train, n_folds, embargo_of(tensors.target_lags))
    saved = project / "artifacts" / "train" / "evidence"
    for number in (n_folds - 1, n_folds):
        test_rows = splits[number - 1][1]
        np.testing.assert_array_equal(np.load(saved / f"fold{number}_dates.npy"), tensors.date_ids[test_rows])
        forecast = np.load(saved / f"fold{number}_forecast.npy")
        assert forecast.shape == (test_rows.size, tensors.head(1).size) and np.isfinite(forecast).all()
        assert forecast.std() > 0
    assert not (project / "artifacts" / ".work" / "train").exists()

    spec = importlib.util.spec_from_file_location("train_stage", ROOT / "stages" / "train.py")
    train_stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_stage)
    cfg = dataclasses.replace(TrainConfig(**params["train"]), evidence_folds=1)
    meta = {"lag": 1}

    def forecasts(t, name):
        found = train_stage.fold_evidence(1, cfg, n_folds, t, 2, meta, tmp_path / name, distributed.SINGLE,
                                          torch.device("cpu"))
        return found[n_folds]["forecast"]

    first = forecasts(tensors, "a")
    later = np.arange(splits[-1][1][0], tensors.date_ids.size)        # the last fold's days and after
    tensors.raw_labels[later] = -tensors.raw_labels[later] + 1.0
    tensors.labels[later] = -tensors.labels[later] + 1.0
    np.testing.assert_array_equal(forecasts(tensors, "b"), first)

    params["train"]["evidence_folds"] = n_folds + 1
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    refused = subprocess.run(argv, cwd=project, capture_output=True, text=True)
    assert refused.returncode != 0 and "train.evidence_folds" in refused.stderr
