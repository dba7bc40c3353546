"""Shared fixtures: tiny generated markets and the path of the real competition sample."""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from spreadcast.config import SyntheticConfig
from spreadcast.data import synthetic

ROOT = Path(__file__).resolve().parents[1]
KAGGLE_SAMPLE = ROOT.parent / "shared" / "kaggle_sample"

TINY_SYNTHETIC = dict(seed=3, n_train_days=260, n_test_days=20, n_scored_days=12, n_lme=2, n_jpx=2,
                      n_us=6, n_fx=5, targets_per_lag=8, n_signals=2, signal_strength=0.5)

# A params.yaml small enough for the end-to-end pipeline test.
TINY_PARAMS = {
    "synthetic": TINY_SYNTHETIC,
    "windows": {"history": 8, "val_days": 40, "holdout_days": 40, "embargo": 5},
    "prescreen": {"top_k": 24},
    "train": {"d_model": 16, "n_heads": 2, "n_layers": 1, "epochs": 2, "batch_size": 32, "patience": 2},
    "finetune": {"epochs": 1},
    "prune": {"min_keep": 4},
    # on the tiny market's 160 days of evidence the prior alone holds its own against the blend;
    # the tests of serving need the heads in what is served (the fallback is tested on its own)
    "blend": {"fallback": False},
}


def edit_csv(path, fn):
    """Rewrite a CSV through `fn`, every cell read as text."""
    df = pl.read_csv(path, infer_schema_length=0)
    fn(df).write_csv(path)


def set_cell(path, key_column, key, column, value):
    """Write `value` (as text) into `column` of the row whose `key_column` is `key`."""
    edit_csv(path, lambda df: df.with_columns(pl.when(pl.col(key_column) == key).then(pl.lit(value))
                                              .otherwise(pl.col(column)).alias(column)))


# The stage scripts in pipeline order, for tests that run them directly into a folder `d`.
PIPELINE = [
    "generate.py --dataset {d}/dataset --oracle {d}/oracle",
    "ingest.py --out {d}/data",
    "split.py --data {d}/data --out {d}/splits",
    "prescreen.py --data {d}/data --splits {d}/splits --out {d}/features",
    "scale.py --data {d}/data --splits {d}/splits --features {d}/features --out {d}/scaling",
    "windows.py --data {d}/data --splits {d}/splits --features {d}/features --scaling {d}/scaling --out {d}/tensors",
]
PER_LAG = [
    "train.py --lag {k} --tensors {d}/tensors --out {d}/train/lag{k} --metrics {d}/metrics/train_lag{k}.json "
    "--work {d}/work/train_lag{k}",
    "prune.py --lag {k} --tensors {d}/tensors --train {d}/train/lag{k} --heads {d}/train --out {d}/prune/lag{k}",
    "finetune.py --lag {k} --tensors {d}/tensors --train {d}/train/lag{k} --prune {d}/prune/lag{k} "
    "--out {d}/finetune/lag{k} --metrics {d}/metrics/finetune_lag{k}.json --work {d}/work/finetune_lag{k}",
]
BLEND = "blend.py --data {d}/data --tensors {d}/tensors --train {d}/train --models {d}/finetune --out {d}/blend"
SUBMIT = ("submit.py --data {d}/data --tensors {d}/tensors --models {d}/finetune --blend {d}/blend --oracle {d}/oracle "
          "--out {d}/submission --metrics {d}/metrics/submit.json --train {d}/train --work {d}/work/refit")
EVALUATE = ("evaluate.py --data {d}/data --tensors {d}/tensors --models {d}/finetune --blend {d}/blend "
            "--oracle {d}/oracle --out {d}/evaluate --metrics {d}/metrics/evaluate.json")


def write_params(folder: Path, **sections) -> tuple[Path, Path]:
    """A tiny params.yaml in `folder` (reading the dataset generated into its artifact folder
    unless `data` says otherwise); returns it and that artifact folder (where stages write)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in {**TINY_PARAMS, **sections}.items():
        params[section] = {**params[section], **values}
    artifacts = folder / "artifacts"
    params["data"]["dir"] = sections.get("data", {}).get("dir", str(artifacts / "dataset"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path, artifacts


def stage(command: str, params: Path, in_process: bool = False, **fmt) -> None:
    """Run a stage script on `params`. `in_process` runs it in this interpreter (as its own
    `__main__`, with its arguments in sys.argv), saving the start-up of a new one, which for a
    tiny stage is most of its time."""
    script, *args = command.format(**fmt).split()
    argv = [str(ROOT / "stages" / script), "--params", str(params), *args]
    if not in_process:
        result = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        return
    import runpy

    from spreadcast import io

    saved = sys.argv
    sys.argv = argv
    try:
        runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        assert not exc.code, f"{script} exited with status {exc.code}"
    finally:
        sys.argv = saved
        io.confine_writes(None)


@pytest.fixture
def tiny_cfg() -> SyntheticConfig:
    return SyntheticConfig(**TINY_SYNTHETIC)


@pytest.fixture
def tiny_dataset(tmp_path, tiny_cfg) -> Path:
    """A tiny generated dataset folder in the competition's layout."""
    synthetic.write(synthetic.generate(tiny_cfg), tmp_path / "dataset", tmp_path / "oracle", tiny_cfg)
    return tmp_path / "dataset"


@pytest.fixture
def kaggle_sample() -> Path:
    if not (KAGGLE_SAMPLE / "test.csv").is_file():
        pytest.skip("../shared/kaggle_sample is not present")
    return KAGGLE_SAMPLE


def dvc(cwd, *args):
    """Run dvc in `cwd`; the stages' `python` is this interpreter, importing that copy's src/."""
    result = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=cwd, capture_output=True,
                            text=True, env=dvc_env(cwd))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def dvc_env(cwd) -> dict:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "PYTHONPATH": str(Path(cwd) / "src")}


def make_project(root: Path, **overrides: dict) -> Path:
    """A git + DVC copy of the project in `root` with TINY_PARAMS (and `overrides`) applied."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "stages", "src"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in {**TINY_PARAMS, **overrides}.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(root, "init", "-q")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "tiny project"], cwd=root, check=True)
    return root


def tensors_project(tiny_project: Path, root: Path, **train) -> tuple[Path, dict]:
    """A project at `root` holding only the tiny project's exported tensors, and its params
    with `train` settings updated: for running one training stage on its own."""
    (root / "artifacts").mkdir(parents=True)
    shutil.copytree(tiny_project / "artifacts" / "tensors", root / "artifacts" / "tensors")
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["train"].update(train)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root, params


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory) -> Path:
    """A copy of the project with a tiny params.yaml, after a real `dvc repro` that was killed
    with SIGKILL at random moments and then completed (`interrupted_repro`). What the kills
    hit and how the result compares with uninterrupted runs is in `tiny_project.kills`."""
    root = make_project(tmp_path_factory.mktemp("project") / "p")
    interrupted_repro(root, KILLS, KILL_COUNT)
    return root


KILL_SEED = int(os.environ.get("SPREADCAST_KILL_SEED", random.randrange(1 << 30)))
KILL_COUNT = int(os.environ.get("SPREADCAST_KILLS", 1))       # more kills: more moments hit, a longer suite
KILLS: dict = {"seed": KILL_SEED}


def running_stage(output: str) -> str | None:
    names = re.findall(r"Running stage '([^']+)'", output)
    return names[-1] if names else None


def locked_outs(project: Path) -> dict[str, str]:
    """Every output path of dvc.lock with its hash."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {out["path"]: out.get("md5") for stage in lock["stages"].values() for out in stage.get("outs", [])}


def clear_torn_rwlock(project: Path) -> bool:
    """DVC writes its lock table `.dvc/tmp/rwlock` in place; a SIGKILL during that write leaves
    it unreadable and every later dvc command refuses to run. It holds only the locks of the
    killed process, so it is removed, as a user would remove it. True if it was."""
    path = project / ".dvc" / "tmp" / "rwlock"
    try:
        json.loads(path.read_text())
        return False
    except FileNotFoundError:
        return False
    except ValueError:
        path.unlink()
        return True


def interrupted_repro(project: Path, record: dict, kills: int = 3) -> None:
    """`dvc repro` killed (SIGKILL to dvc and its stage) `kills` times at random moments, then
    run to the end; then every stage that was killed is run again whole (`--force`).

    Records in `record`: the kills (delay, running stage, whether `dvc status` then reported
    that stage as not done), `dvc status` and leftover temporary files after completion, and
    the output hashes before and after the killed stages were re-run uninterrupted.
    The seed of the kill moments is in `record["seed"]` (set SPREADCAST_KILL_SEED to replay).
    """
    rng = random.Random(record["seed"])
    record["kills"] = []
    for _ in range(kills):
        proc = subprocess.Popen([str(Path(sys.executable).parent / "dvc"), "repro"], cwd=project,
                                env=dvc_env(project), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        delay = rng.uniform(2.0, 25.0)
        try:
            proc.communicate(timeout=delay)
            break                                       # it finished before the kill was due
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output = proc.communicate()[0]
            stage = running_stage(output)
            # the stage finished if DVC recorded it before the kill
            finished = stage is not None and "Updating lock file" in output.rsplit("Running stage", 1)[-1]
        stale_lock = clear_torn_rwlock(project)
        status = json.loads(dvc(project, "status", "--json") or "{}")
        lock = yaml.safe_load((project / "dvc.lock").read_text()) if (project / "dvc.lock").exists() else {}
        record["kills"].append({"delay_s": round(delay, 2), "stage": stage,
                                "reported_not_done": stage in status, "finished": finished,
                                "locked": stage in (lock or {}).get("stages", {}), "torn_rwlock": stale_lock})
    dvc(project, "repro")
    record["status_after"] = json.loads(dvc(project, "status", "--json") or "{}")
    record["leftovers"] = sorted(str(p.relative_to(project)) for p in (project / "artifacts").rglob("*")
                                 if p.name.endswith((".tmp", ".old")) and ".work" not in p.parts)
    record["outs_after_kills"] = locked_outs(project)
    for stage in sorted({k["stage"] for k in record["kills"] if k["stage"]}):
        dvc(project, "repro", "--force", "--single-item", stage)
    record["outs_uninterrupted"] = locked_outs(project)
