"""End to end: the real `dvc repro` on a tiny generated config, in a temporary copy."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from conftest import dvc, dvc_env


def dvc_bin() -> Path:
    return Path(sys.executable).parent / "dvc"


def test_submission_shape_columns_finite(tiny_project):
    project = tiny_project
    sub = pl.read_csv(project / "artifacts/submission/submission.csv")
    pairs = pl.read_csv(project / "artifacts/synthetic/dataset/target_pairs.csv")
    test = pl.read_csv(project / "artifacts/synthetic/dataset/test.csv", columns=["date_id"])
    assert sub.columns == ["date_id", *pairs["target"].to_list()]
    assert sub["date_id"].to_list() == test["date_id"].to_list()
    values = sub.drop("date_id").to_numpy()
    assert np.isfinite(values).all() and (values.std(axis=1) > 0).all()
    assert pl.read_parquet(project / "artifacts/submission/submission.parquet").equals(sub)


def test_metrics_report_model_ridge_and_ceiling(tiny_project):
    project = tiny_project
    import json

    metrics = json.loads((project / "artifacts/metrics/evaluate.json").read_text())
    for key in ("model_sharpe", "ridge_sharpe", "const_rank_sharpe", "ceiling_sharpe", "fraction_of_ceiling",
                "val_model_sharpe", "val_ridge_sharpe", "val_const_rank_sharpe", "val_ceiling_sharpe",
                "val_fraction_of_ceiling"):
        assert key in metrics
    best = max(metrics["ridge_sharpe"], metrics["const_rank_sharpe"])
    assert abs(metrics["model_vs_best_baseline"] - (metrics["model_sharpe"] - best)) < 1e-12
    assert metrics["ceiling_sharpe"] > 0.5        # the planted signal is there to be found
    # the model finds some of it (0.52 at these settings; a model scoring noise sits within
    # about 1/sqrt(40) = 0.16 of zero on the 40 holdout days)
    assert metrics["model_sharpe"] > 0.3
    assert 0 < metrics["fraction_of_ceiling"] == metrics["model_sharpe"] / metrics["ceiling_sharpe"]


def test_second_repro_does_nothing_and_params_rerun_only_downstream(tiny_project):
    project = tiny_project
    assert "Data and pipelines are up to date" in dvc(project, "repro")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["rolling_window"] += 5
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = dvc(project, "repro")
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"evaluate"}
    status = dvc(project, "status")
    assert "up to date" in status


def test_artifacts_travel_through_a_dvc_remote(tiny_project, tmp_path):
    """Push to a local-folder remote, clone the repository elsewhere, pull: nothing to rerun."""
    project = tiny_project
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    dvc(project, "remote", "add", "--force", "-d", "store", str(tmp_path / "remote"))
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "run"], cwd=project, check=True)
    assert "pushed" in dvc(project, "push")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    assert not (clone / "artifacts" / "submission").exists()
    dvc(clone, "pull")
    assert (clone / "artifacts/submission/submission.csv").read_bytes() == \
           (project / "artifacts/submission/submission.csv").read_bytes()
    assert "Data and pipelines are up to date" in dvc(clone, "repro")
    assert "up to date" in dvc(clone, "status")


@pytest.mark.parametrize("pool_lags", [False, True])
def test_prune_by_validation_keeps_the_best_candidate_count(tiny_project, tmp_path, pool_lags):
    """The `validate` policy, through the stage script, on a copy of the tiny project's tensors
    and trained heads: it scores every candidate count and keeps the best one; with `pool_lags`,
    the score is the mean over every lag head, so each head keeps the same count."""
    import json
    import shutil
    import sys

    for name in ("tensors", "train"):
        shutil.copytree(tiny_project / "artifacts" / name, tmp_path / "artifacts" / name)
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["prune"].update(policy="validate", candidates=[4, 8, 1000], min_keep=1, pool_lags=pool_lags)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    n_features = len(json.loads((tmp_path / "artifacts/tensors/meta.json").read_text())["model_inputs"])
    found = {}
    for lag in (1, 2):
        out = subprocess.run([sys.executable, str(tiny_project / "stages/prune.py"), "--params", "params.yaml",
                              "--lag", str(lag), "--tensors", "artifacts/tensors", "--train", f"artifacts/train/lag{lag}",
                              "--heads", "artifacts/train", "--out", f"artifacts/prune/lag{lag}"],
                             cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "validation Sharpe of the re-solved linear path" in out.stdout
        registry = json.loads((tmp_path / f"artifacts/prune/lag{lag}/registry.json").read_text())
        tried = {int(k): v for k, v in registry["validation_sharpe_by_count"].items()}
        assert set(tried) == {4, 8, n_features}                  # 1000 is capped at every feature
        best = max(tried, key=lambda k: (tried[k], -k))
        assert len(registry["features"]) == best
        found[lag] = tried
    assert (found[1] == found[2]) == pool_lags                   # per head, the two heads score differently


def test_a_failed_stage_leaves_its_previous_outputs_in_place(tiny_project):
    """DVC removes a stage's outputs before running it unless they persist; every output does,
    and every stage writes atomically, so a failure keeps the last good outputs and a rerun
    with the same settings has nothing to do."""
    project = tiny_project
    metrics = project / "artifacts/metrics/evaluate.json"
    before = metrics.read_bytes(), sorted(p.name for p in (project / "artifacts/evaluate").iterdir())
    original = (project / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["evaluate"]["rolling_window"] = 0                       # refused by the stage's config check
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        failed = subprocess.run([str(dvc_bin()), "repro", "evaluate"], cwd=project, capture_output=True,
                                text=True, env=dvc_env(project))
        assert failed.returncode != 0
        assert "evaluate.rolling_window" in failed.stdout + failed.stderr
        assert (metrics.read_bytes(), sorted(p.name for p in (project / "artifacts/evaluate").iterdir())) == before
    finally:
        (project / "params.yaml").write_text(original)
    assert "up to date" in dvc(project, "status")


def test_walk_forward_evidence_comes_before_the_days_it_judges(tiny_project):
    """The prescreen repeats its screen on each fold's fitting days; the blend's weights rest on
    the folds' forecasts and then the validation days'; evaluate reports them all."""
    import json

    project = tiny_project
    n_folds = yaml.safe_load((project / "params.yaml").read_text())["walkforward"]["folds"]
    registry = json.loads((project / "artifacts/features/registry.json").read_text())
    assert len(registry["fold_inputs"]) == n_folds
    exported = set(json.loads((project / "artifacts/tensors/meta.json").read_text())["features"])
    assert all(set(inputs) <= exported for inputs in registry["fold_inputs"])
    fitted = json.loads((project / "artifacts/blend/blend.json").read_text())
    entries = fitted["walk_forward"]
    assert [e["fold"] for e in entries] == [f"fold {k + 1}" for k in range(n_folds)] + ["validation"]
    starts = [e["dates"][0] for e in entries]
    ends = [e["dates"][1] for e in entries]
    assert all(end < start for end, start in zip(ends, starts[1:]))
    assert fitted["fit_on"] == "walk_forward" and fitted["fit_days"] == sum(e["days"] for e in entries)
    assert "transformer" not in entries[0]["sharpe"] and "transformer" in entries[-1]["sharpe"]
    assert set(entries[0]["per_lag"]) == {str(lag) for lag in fitted["target_lags"]}
    report = json.loads((project / "artifacts/evaluate/report.json").read_text())
    assert report["walk_forward"] == entries
    # the ridge reads the first source columns of the screen, as many as the folds chose
    ridge, counts = fitted["ridge"], yaml.safe_load((project / "params.yaml").read_text())["blend"]["ridge_columns"]
    assert ridge["columns"] in counts and [c["columns"] for c in ridge["by_columns"]] == counts
    mean = {c["columns"]: c["mean_sharpe"] for c in ridge["by_columns"]}
    if ridge["columns"] == 0:       # every input, unless a count beat it by more than the margin
        assert max(mean.values()) - mean[0] <= ridge["columns_margin"]
    else:
        assert mean[ridge["columns"]] == max(mean.values()) > mean[0] + ridge["columns_margin"]
    model_inputs = registry["model_inputs"]
    sources = list(dict.fromkeys(n.split("__")[0] for n in model_inputs))
    kept = sources if ridge["columns"] == 0 else sources[:ridge["columns"]]
    assert fitted["ridge_inputs"] == [n for n in model_inputs if n.split("__")[0] in kept]
