"""Export a self-contained bundle for the competition: weights, registries, scaling statistics,
the history the features need, the inference code, and a notebook that starts the server.

    bundle/
      artifacts/        the subset of the pipeline's artifacts `Server` reads
      src/spreadcast/   the package, installable with the bundle's pyproject.toml
      pyproject.toml    pinned runtime dependencies, for `pip install` where a build is possible
      notebook.ipynb    starts the competition's inference server with `spreadcast.serve.predict`
      manifest.json     SHA-256 of every file

Upload the folder as a dataset, attach it to the notebook, and run the notebook.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl

from spreadcast.data.layout import DATE
from spreadcast.io import read_json, sha256_file
from spreadcast.serve.predictor import served_folder
from spreadcast.serve.server import TAIL_DAYS

RUNTIME_DEPENDENCIES = ["torch==2.13.0", "numpy==2.4.6", "polars==2.1.0", "pyarrow==26.0.1",
                        "pandas==3.1.1", "pyyaml==6.0.3", "tqdm==4.70.1"]

PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "spreadcast"
version = "{version}"
description = "spreadcast inference bundle"
requires-python = ">=3.10"
dependencies = {dependencies}

[tool.setuptools.packages.find]
where = ["src"]
"""

NOTEBOOK_CELLS = [
    "# spreadcast inference server\n"
    "# Attach this bundle as a dataset; BUNDLE is where it is mounted.",
    "import os, sys\n"
    "BUNDLE = os.environ.get('SPREADCAST_BUNDLE', '/kaggle/input/spreadcast-bundle')\n"
    "sys.path.insert(0, os.path.join(BUNDLE, 'src'))   # offline: the bundle carries the package\n"
    "os.environ['SPREADCAST_ARTIFACTS'] = os.path.join(BUNDLE, 'artifacts')",
    "from spreadcast.serve import predict\n"
    "import kaggle_evaluation.mitsui_inference_server\n"
    "server = kaggle_evaluation.mitsui_inference_server.MitsuiInferenceServer(predict)\n"
    "if os.getenv('KAGGLE_IS_COMPETITION_RERUN'):\n"
    "    server.serve()\n"
    "else:\n"
    "    server.run_local_gateway(('/kaggle/input/mitsui-commodity-prediction-challenge/',))",
]


def _notebook() -> dict:
    cells = [{"cell_type": "markdown" if i == 0 else "code", "metadata": {}, "source": text,
              **({} if i == 0 else {"outputs": [], "execution_count": None})}
             for i, text in enumerate(NOTEBOOK_CELLS)]
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
            "nbformat": 4, "nbformat_minor": 5}


def export(artifacts: Path, package: Path, out: Path, version: str = "0.1.0") -> dict:
    """Write the bundle into `out` (an empty folder); returns the manifest."""
    art = out / "artifacts"
    registry = read_json(artifacts / "data" / "registry.json")
    for rel in ("data/registry.json", "features/registry.json", "scaling/scaling.json", "tensors/meta.json"):
        (art / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(artifacts / rel, art / rel)
    if (artifacts / "blend" / "blend.json").is_file():    # the blend as served: the ridge refit on every label
        (art / "blend").mkdir(parents=True, exist_ok=True)
        for name in ("blend.json", "ridge_all_weights.npy", "ridge_all_intercept.npy", "own_all_coef.npy",
                     "own_all_offset.npy", "prior_sum.npy", "prior_count.npy"):
            shutil.copy2(artifacts / "blend" / name, art / "blend" / name)
    for lag in registry["lags"]:
        source = served_folder(artifacts, lag)          # a refit model replaces the fine-tuned one
        (art / "finetune" / f"lag{lag}").mkdir(parents=True, exist_ok=True)
        for suffix in (".pt", ".json"):
            shutil.copy2(source / f"model{suffix}", art / "finetune" / f"lag{lag}" / f"model{suffix}")
    # only the history the features of the first served days need
    prices = pl.read_parquet(artifacts / "data" / "prices.parquet").filter(pl.col(DATE) <= registry["train_dates"][1])
    prices = prices.tail(TAIL_DAYS)
    prices.write_parquet(art / "data" / "prices.parquet")
    labels = pl.read_parquet(artifacts / "data" / "labels.parquet")
    labels.filter(pl.col(DATE) >= prices[DATE].min() - 10).write_parquet(art / "data" / "labels.parquet")
    pl.read_parquet(artifacts / "data" / "revealed.parquet").head(0).write_parquet(art / "data" / "revealed.parquet")

    shutil.copytree(package, out / "src" / "spreadcast", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (out / "pyproject.toml").write_text(PYPROJECT.format(version=version, dependencies=json.dumps(RUNTIME_DEPENDENCIES)))
    (out / "notebook.ipynb").write_text(json.dumps(_notebook(), indent=1) + "\n")
    manifest = {str(p.relative_to(out)): sha256_file(p) for p in sorted(out.rglob("*")) if p.is_file()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
