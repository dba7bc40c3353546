"""Data-parallel training: two gloo processes under torchrun match one process."""
import json
import shutil
import subprocess
import sys

import numpy as np
import torch
import yaml

from conftest import ROOT


def train(project, processes: int, tag: str) -> subprocess.CompletedProcess:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"].update(processes=processes)
    path = project / f"params_{tag}.yaml"
    path.write_text(yaml.safe_dump(params))
    return subprocess.run([sys.executable, str(ROOT / "stages" / "train.py"), "--params", str(path), "--lag", "1",
                           "--tensors", "artifacts/tensors", "--out", f"artifacts/train_{tag}",
                           "--metrics", f"artifacts/metrics_{tag}.json", "--work", f"artifacts/.work/{tag}"],
                          cwd=project, capture_output=True, text=True)


def test_two_gloo_processes_match_one(tiny_project, tmp_path):
    project = tmp_path / "ddp"
    (project / "artifacts").mkdir(parents=True)
    shutil.copytree(tiny_project / "artifacts" / "tensors", project / "artifacts" / "tensors")
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["train"].update(dropout=0.0, epochs=3, patience=3)     # no per-process dropout masks
    (project / "params.yaml").write_text(yaml.safe_dump(params))

    one, two = train(project, 1, "one"), train(project, 2, "two")
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-2000:]
    assert "x 2 processes" in two.stdout
    runs = 1 + params["train"]["evidence_folds"]                     # the head, then its fold forecasts
    assert two.stdout.count("epoch   1/3") == runs                  # rank 0 alone prints

    a = json.loads((project / "artifacts" / "metrics_one.json").read_text())
    b = json.loads((project / "artifacts" / "metrics_two.json").read_text())
    assert a["epochs_run"] == b["epochs_run"] and a["best_epoch"] == b["best_epoch"]
    # each process averages its half of a batch; the mean of the halves differs from the
    # batch mean only where a loss is not a plain per-sample mean, so the runs stay close
    assert abs(a["val_sharpe"] - b["val_sharpe"]) < 0.05
    assert abs(a["val_pred_spread"] - b["val_pred_spread"]) < 0.01 * a["val_pred_spread"]
    wa = torch.load(project / "artifacts/train_one/best.pt", weights_only=True)["model"]
    wb = torch.load(project / "artifacts/train_two/best.pt", weights_only=True)["model"]
    assert wa.keys() == wb.keys()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 0.05
    assert not (project / "artifacts" / ".work" / "two").exists()      # rank 0 moved its checkpoints
    for fold in [e["fold"] for e in a["evidence_folds"]]:
        fa, fb = (np.load(project / f"artifacts/train_{tag}/evidence/fold{fold}_forecast.npy")
                  for tag in ("one", "two"))
        assert np.abs(fa - fb).max() < 0.05 * np.abs(fa).max()


def _gradient_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from spreadcast.training import distributed

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        wrapped = distributed.wrap(model, distributed.Context(rank=rank, world=world), torch.device("cpu"))
        wrapped(torch.full((4, 3), float(rank + 1))).sum().backward()   # rank r's gradient: 4 (r + 1)
        torch.save(model.weight.grad.clone(), f"{out}/grad{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_wrapped_model_averages_gradients_across_processes(tmp_path):
    """Two gloo processes with different data end a backward pass with the same gradient, the
    mean of theirs (4 and 8 -> 6): the guarantee that keeps every process's weights equal."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_gradient_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    grads = [torch.load(tmp_path / f"grad{r}.pt", weights_only=True) for r in range(2)]
    for g in grads:
        torch.testing.assert_close(g, torch.full((1, 3), 6.0))
