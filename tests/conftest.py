"""Shared fixtures: tiny generated markets and the path of the real competition sample."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
}


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
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "PYTHONPATH": str(Path(cwd) / "src")}
    result = subprocess.run([str(Path(bin_dir) / "dvc"), *args], cwd=cwd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory) -> Path:
    """A copy of the project with a tiny params.yaml, after a real `dvc repro`."""
    root = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "stages", "src"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in TINY_PARAMS.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(root, "init", "-q")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "tiny project"], cwd=root, check=True)
    dvc(root, "repro")
    return root
