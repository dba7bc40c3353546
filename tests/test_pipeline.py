"""End to end: the real `dvc repro` on a tiny generated config, in a temporary copy."""
import subprocess

import numpy as np
import polars as pl
import yaml

from conftest import dvc


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
    for key in ("model_sharpe", "ridge_sharpe", "ceiling_sharpe", "fraction_of_ceiling"):
        assert key in metrics
    assert metrics["ceiling_sharpe"] > 0.5        # the planted signal is there to be found


def test_second_repro_does_nothing_and_params_rerun_only_downstream(tiny_project):
    project = tiny_project
    assert "Data and pipelines are up to date" in dvc(project, "repro")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["finetune"]["lr"] = 2e-4
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = dvc(project, "repro")
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"finetune@1", "finetune@2", "finetune@3", "finetune@4", "evaluate", "submit", "bundle"}
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
