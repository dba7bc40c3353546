"""Interruptions: SIGKILL at random moments of a real `dvc repro`, and of a training stage.

A killed stage must leave nothing DVC would take as done, and the next run must finish with
the same result as an uninterrupted one. The kill moments are random; set
SPREADCAST_KILL_SEED to replay a failing draw (the seed is in the assertion messages).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import KILL_SEED, KILLS, ROOT, tensors_project

SEED = KILL_SEED


def test_sigkill_at_random_moments_then_repro_matches_uninterrupted(tiny_project):
    """The session's tiny project was built by a `dvc repro` killed at random
    moments and then completed (see `conftest.interrupted_repro`)."""
    record = KILLS
    where = f"seed {record['seed']}, kills {record['kills']}"
    assert record["kills"], where
    for kill in record["kills"]:
        # DVC must not take a killed stage as done: it reports it, unless the kill landed
        # after the stage had finished and DVC had written its lock entry
        if kill["stage"] is not None and not kill["finished"]:
            assert kill["reported_not_done"], where
    assert record["status_after"] == {}, where
    assert record["leftovers"] == [], where
    # the killed stages, run again whole, give the same outputs as after the interruptions
    assert record["outs_uninterrupted"] == record["outs_after_kills"], where


def run_train(project: Path, work: str) -> subprocess.Popen:
    args = ["--lag", "1", "--tensors", "artifacts/tensors", "--out", f"artifacts/train_{work}",
            "--metrics", f"artifacts/metrics_{work}.json", "--work", f"artifacts/.work/{work}"]
    return subprocess.Popen([sys.executable, str(ROOT / "stages" / "train.py"), *args], cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_training_killed_mid_epoch_resumes_to_the_same_metrics(tiny_project, tmp_path):
    project, _ = tensors_project(tiny_project, tmp_path / "train", epochs=6, patience=6, batch_size=8)

    reference = run_train(project, "reference")
    assert reference.wait() == 0, reference.communicate()[0]

    rng = random.Random(SEED)
    proc = run_train(project, "killed")
    last = project / "artifacts" / ".work" / "killed" / "last.json"
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"training ended before the kill: {proc.communicate()[0]}"
    time.sleep(rng.uniform(0.0, 0.3))                 # somewhere inside a later epoch
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert not (project / "artifacts" / "train_killed").exists()

    resumed = run_train(project, "killed")
    output = resumed.communicate()[0]
    assert resumed.returncode == 0, output
    assert "resuming after epoch" in output, output
    a = json.loads((project / "artifacts" / "metrics_reference.json").read_text())
    b = json.loads((project / "artifacts" / "metrics_killed.json").read_text())
    assert a == b, f"seed {SEED}"
    for name in ("best.pt", "last.pt"):
        assert (project / "artifacts" / "train_reference" / name).read_bytes() == \
               (project / "artifacts" / "train_killed" / name).read_bytes(), f"{name}, seed {SEED}"
