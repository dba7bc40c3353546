"""The catalogue of bad inputs, each run through the real `ingest` stage script.

Every case is one row of the README's table "Bad input" (the last test keeps the two in
step). An `error` case must exit with status 1 and exactly one line on stderr naming the
file and the column, row or key at fault, leaving no output and no temporary file behind. A
`recover` case must finish, log its warning, and leave features that the next stage accepts.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import polars as pl
import pytest
import yaml

from conftest import ROOT, TINY_PARAMS, TINY_SYNTHETIC, edit_csv, set_cell
from spreadcast.config import SyntheticConfig
from spreadcast.data import synthetic


@dataclass
class Case:
    id: str
    corrupt: Callable[[Path, dict], None]     # (dataset folder, params mapping) -> None
    outcome: str                              # "error" or "recover"
    message: str                              # regex matched on stderr (error) or stdout (recover)


def first_pair_column(d: Path) -> str:
    return pl.read_csv(d / "target_pairs.csv")["pair"][0].split(" - ")[0]


def non_target_price(d: Path) -> str:
    used = {c for pair in pl.read_csv(d / "target_pairs.csv")["pair"] for c in pair.split(" - ")}
    train = pl.read_csv(d / "train.csv")
    return next(c for c in train.columns[1:] if c not in used and "olume" not in c and (train[c].drop_nulls() > 0).all())


def rename(d: Path, file: str, old: str, new: str) -> None:
    edit_csv(d / file, lambda df: df.rename({old: new}))


def null_block(d: Path, prefix: str, first: int, last: int) -> None:
    """Every column of one market empty for a block of days (a market closed for a month)."""
    def fn(df):
        cols = [c for c in df.columns if c.startswith(prefix)]
        inside = pl.col("date_id").cast(pl.Int64).is_between(first, last)
        return df.with_columns([pl.when(inside).then(None).otherwise(pl.col(c)).alias(c) for c in cols])
    edit_csv(d / "train.csv", fn)


def shift_label_dates(d: Path) -> None:
    edit_csv(d / "lagged_test_labels" / "test_labels_lag_1.csv",
             lambda df: df.with_columns((pl.col("label_date_id").cast(pl.Int64) - 1).cast(pl.String)))


def set_param(section: str, key: str, value) -> Callable[[Path, dict], None]:
    return lambda d, params: params[section].__setitem__(key, value)


def duplicate_header(d: Path) -> None:
    """The second feature column named like the first."""
    header, rest = (d / "train.csv").read_text().split("\n", 1)
    names = header.split(",")
    names[2] = names[1]
    (d / "train.csv").write_text(",".join(names) + "\n" + rest)


def swap_rows(d: Path) -> None:
    edit_csv(d / "train.csv", lambda df: pl.concat([df[:30], df[31:32], df[30:31], df[32:]]))


def duplicate_row(d: Path) -> None:
    edit_csv(d / "train.csv", lambda df: pl.concat([df[:31], df[30:31], df[31:]]))


CASES = [
    Case("missing-file", lambda d, p: (d / "target_pairs.csv").unlink(), "error",
         r"target_pairs\.csv: file not found"),
    Case("missing-column", lambda d, p: edit_csv(d / "test.csv", lambda df: df.drop(df.columns[3])), "error",
         r"test\.csv: missing column '\w+'"),
    Case("renamed-column", lambda d, p: rename(d, "test.csv", "FX_AUDJPY", "FX_AUD_JPY"), "error",
         r"test\.csv: missing column 'FX_AUDJPY'"),
    Case("renamed-target-column", lambda d, p: rename(d, "train.csv", first_pair_column(d), "RENAMED"), "error",
         r"target_pairs\.csv: row 2 \(target_0\): pair names unknown column '\w+'"),
    Case("extra-column-test", lambda d, p: edit_csv(d / "test.csv", lambda df: df.with_columns(pl.lit("1").alias("NEW"))),
         "recover", r"warning: .*test\.csv: ignoring 1 columns not in train\.csv \('NEW'"),
    Case("extra-column-train", lambda d, p: edit_csv(d / "train.csv", lambda df: df.with_columns(pl.lit("1").alias("NEW"))),
         "error", r"test\.csv: missing column 'NEW'"),
    Case("duplicate-column", lambda d, p: duplicate_header(d), "error", r"train\.csv: duplicate column '\w+'"),
    Case("non-numeric", lambda d, p: set_cell(d / "train.csv", "date_id", "17", "FX_AUDJPY", "abc"), "error",
         r"train\.csv: column 'FX_AUDJPY', date_id 17: non-numeric or non-finite value 'abc'"),
    Case("inf", lambda d, p: set_cell(d / "train.csv", "date_id", "21", "FX_AUDJPY", "inf"), "error",
         r"train\.csv: column 'FX_AUDJPY', date_id 21: non-numeric or non-finite value 'inf'"),
    Case("zero-price-target", lambda d, p: set_cell(d / "train.csv", "date_id", "40", first_pair_column(d), "0"),
         "error", r"train\.csv: column '\w+', date_id 40: price 0\.0 is not positive, but a target takes its log"),
    Case("negative-price-target", lambda d, p: set_cell(d / "test.csv", "date_id", str(_first_test_id(d)),
                                                        first_pair_column(d), "-2.5"),
         "error", r"test\.csv: column '\w+', date_id \d+: price -2\.5 is not positive"),
    Case("zero-price-other", lambda d, p: set_cell(d / "train.csv", "date_id", "40", non_target_price(d), "0"),
         "recover", r"ingest: \d+ columns"),
    Case("unsorted-rows", lambda d, p: swap_rows(d), "error", r"train\.csv: unsorted date_id 30 at row 33"),
    Case("duplicate-row", lambda d, p: duplicate_row(d), "error", r"train\.csv: duplicate date_id 30 at row 33"),
    Case("market-missing-a-month", lambda d, p: null_block(d, "LME_", 100, 130), "recover",
         r"warning: .*train\.csv: \d+ column\(s\) \('LME_\w+', .*\) have no values for date_id 100\.\.130"),
    Case("unknown-pair-column", lambda d, p: set_cell(d / "target_pairs.csv", "target", "target_3", "pair",
                                                      "LME_AH_Close - NOPE"), "error",
         r"target_pairs\.csv: row 5 \(target_3\): pair names unknown column 'NOPE'"),
    Case("empty-test-file", lambda d, p: (d / "test.csv").write_text(""), "error",
         r"test\.csv: (no columns|not a readable CSV)"),
    Case("header-only-test-file", lambda d, p: edit_csv(d / "test.csv", lambda df: df.head(0)), "error",
         r"test\.csv: no rows"),
    Case("label-date-mismatch", lambda d, p: shift_label_dates(d), "error",
         r"test_labels_lag_1\.csv: date_id \d+: label_date_id \d+ should be date_id - 1 - 1 = \d+"),
    Case("params-unknown-key", set_param("train", "learning_rate", 0.1), "error",
         r"params\.yaml: train\.learning_rate: unknown key \(allowed: d_model, "),
    Case("params-wrong-type", set_param("train", "epochs", "ten"), "error",
         r"params\.yaml: train\.epochs: expected an integer, got 'ten'"),
    Case("params-out-of-range", set_param("train", "dropout", 1.5), "error",
         r"params\.yaml: train\.dropout: must be in \[0, 1\)"),
    Case("params-bad-choice", set_param("scale", "method", "minmax"), "error",
         r"params\.yaml: scale\.method: 'minmax' is not one of \['standard', 'robust'\]"),
    Case("params-not-yaml", lambda d, p: p.__setitem__("__raw__", "data: [unclosed\n"), "error",
         r"params\.yaml: not valid YAML \(.*\)$"),
    Case("dataset-path-is-a-command", set_param("data", "dir", "x; touch PWNED"), "error",
         r"x; touch PWNED: dataset folder not found"),
]


def _first_test_id(d: Path) -> int:
    return int(pl.read_csv(d / "test.csv", columns=["date_id"])["date_id"][0])


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    cfg = SyntheticConfig(**TINY_SYNTHETIC)
    synthetic.write(synthetic.generate(cfg), root / "dataset", root / "oracle", cfg)
    return root / "dataset"


def tiny_params() -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in TINY_PARAMS.items():
        params[section].update(values)
    return params


def run_stage(project: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "stages" / script), "--params", str(project / "params.yaml"),
                           *args], capture_output=True, text=True, cwd=project)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".old")))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, clean_dataset, tmp_path):
    project = tmp_path / "project"
    dataset = project / "dataset"
    shutil.copytree(clean_dataset, dataset)
    params = tiny_params()
    params["data"]["dir"] = str(dataset)
    case.corrupt(dataset, params)
    raw = params.pop("__raw__", None)
    (project / "params.yaml").write_text(raw if raw is not None else yaml.safe_dump(params))

    out = project / "artifacts" / "data"
    result = run_stage(project, "ingest.py", "--out", str(out))
    assert "Traceback" not in result.stderr
    if case.outcome == "error":
        assert result.returncode == 1, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("ingest: error: ") and re.search(case.message, lines[0]), lines[0]
        assert not out.exists()
        assert not (project / "PWNED").exists() and not (Path.cwd() / "PWNED").exists()
    else:
        assert result.returncode == 0, result.stderr
        assert re.search(case.message, result.stdout), result.stdout
        features = project / "artifacts" / "features"
        splits = project / "artifacts" / "splits"
        made = run_stage(project, "split.py", "--data", str(out), "--out", str(splits))
        assert made.returncode == 0, made.stderr
        after = run_stage(project, "prescreen.py", "--data", str(out), "--splits", str(splits), "--out", str(features))
        assert after.returncode == 0, after.stderr
        assert (features / "registry.json").is_file()
    assert leftovers(project / "artifacts") == [] if (project / "artifacts").exists() else True


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink"])
def test_outputs_confined_to_the_artifact_folder(where, clean_dataset, tmp_path):
    """No argument, parameter or link makes a stage write outside artifacts/ beside params.yaml."""
    project = tmp_path / "project"
    (project / "artifacts").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    params = tiny_params()
    params["data"]["dir"] = str(clean_dataset)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    target = {"absolute": str(outside / "data"),
              "dotdot": str(project / "artifacts" / ".." / ".." / "outside" / "data"),
              "symlink": str(project / "artifacts" / "link" / "data")}[where]
    (project / "artifacts" / "link").symlink_to(outside)
    result = run_stage(project, "ingest.py", "--out", target)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.fullmatch(r"ingest: error: --out '.*': refusing to write outside the artifact folder '.*artifacts'\n",
                        result.stderr), result.stderr
    assert list(outside.iterdir()) == []


def test_dataset_path_never_reaches_a_shell():
    """dvc.yaml runs commands through a shell: no parameter may be interpolated into one."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        assert not re.search(r"\$\{(?!item\.)", stage["cmd"]), f"{name}: {stage['cmd']}"


def test_readme_table_lists_every_case():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Bad input", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([\w-]+)` \|", table, flags=re.M)
    assert listed == [c.id for c in CASES]


@pytest.mark.parametrize("raise_, status, line", [
    ("raise RuntimeError('boom\\nsecond line')", 2,
     r"demo: unexpected error: RuntimeError: boom \(at <string>:\d+; SPREADCAST_TRACEBACK=1 shows the traceback\)"),
    ("raise KeyboardInterrupt", 130, r"demo: interrupted; nothing was written in place of its outputs"),
    ("from spreadcast.errors import DataError; raise DataError('f.csv: row 3: bad')", 1, r"demo: error: f\.csv: row 3: bad"),
])
def test_any_stage_failure_is_one_line(raise_, status, line):
    code = f"from spreadcast import cli\ndef main():\n    {raise_}\ncli.run('demo', main)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == status
    assert re.fullmatch(line + "\n", result.stderr), result.stderr


@pytest.mark.parametrize("script, args, stage_name", [
    ("prune.py", ["--lag", "2", "--tensors", "artifacts/tensors", "--train", "artifacts/train/lag2",
                  "--heads", "artifacts/train", "--out", "artifacts/prune/lag2"], "windows"),
    ("finetune.py", ["--lag", "3", "--tensors", "artifacts/tensors_ok", "--train", "artifacts/train/lag3",
                     "--prune", "artifacts/prune/lag3", "--out", "artifacts/finetune/lag3", "--metrics",
                     "artifacts/m.json", "--work", "artifacts/.work/f"], "train@3"),
    ("scale.py", ["--data", "artifacts/data", "--splits", "artifacts/splits", "--features", "artifacts/features",
                  "--out", "artifacts/scaling"], "ingest"),
    ("windows.py", ["--data", "artifacts/tensors_ok", "--splits", "artifacts/splits", "--features", "artifacts/tensors_ok",
                    "--scaling", "artifacts/tensors_ok", "--out", "artifacts/tensors"], "split"),
])
def test_a_missing_input_names_the_stage_that_makes_it(script, args, stage_name, tmp_path):
    """One line naming the argument, the path and the stage to run; nothing is written."""
    project = tmp_path / "project"
    (project / "artifacts" / "tensors_ok").mkdir(parents=True)
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    result = run_stage(project, script, *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not found" in lines[0]
    assert f"it is made by stage '{stage_name}' (dvc repro {stage_name})" in lines[0]
    assert sorted(p.name for p in (project / "artifacts").iterdir()) == ["tensors_ok"]
