"""Serving: predict() matches the pipeline's submission, and never raises on a bad day."""
import gc
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

import gateway
from conftest import BLEND, PER_LAG, PIPELINE, SUBMIT, stage, write_params
from spreadcast.serve import replay
from spreadcast.serve.server import Server


def test_replay_reproduces_the_submission(tiny_project):
    submission, stats = replay.replay(tiny_project / "artifacts/synthetic/dataset", tiny_project / "artifacts")
    expected = pl.read_csv(tiny_project / "artifacts/submission/submission.csv")
    assert submission.columns == expected.columns
    np.testing.assert_allclose(submission.to_numpy(), expected.to_numpy(), atol=1e-6)
    assert stats["fallbacks"] == 0 and stats["days"] == expected.height
    assert stats["scored_days"] > 0 and np.isfinite(stats["sharpe"])


def day_inputs(dataset, date_id, lags=(1, 2, 3, 4)):
    test = pl.read_csv(dataset / "test.csv", infer_schema_length=0)
    batches = []
    for k in lags:
        frame = pl.read_csv(dataset / "lagged_test_labels" / f"test_labels_lag_{k}.csv", infer_schema_length=0)
        batches.append(frame.filter(pl.col("date_id").cast(pl.Int64) == date_id))
    return test.filter(pl.col("date_id").cast(pl.Int64) == date_id), batches


def check_reply(reply, batches):
    expected = [c for b in batches for c in b.columns if c not in ("date_id", "label_date_id")]
    assert reply.height == 1 and reply.columns == expected
    row = reply.to_numpy()[0].astype(float)
    assert np.isfinite(row).all() and row.std() > 0


def test_malformed_days_never_raise(tiny_project):
    dataset = tiny_project / "artifacts/synthetic/dataset"
    server = Server(tiny_project / "artifacts")
    rng = np.random.default_rng(0)
    dates = pl.read_csv(dataset / "test.csv", columns=["date_id"])["date_id"].to_list()
    for i in range(120):
        d = dates[min(i // 6, len(dates) - 1)] + (0 if rng.random() < 0.8 else int(rng.integers(1, 4)))
        test, batches = day_inputs(dataset, d)
        kind = i % 8
        if kind == 0:                                     # a random subset of columns
            keep = [c for c in test.columns if rng.random() < 0.5]
            test = test.select(keep)
        elif kind == 1:                                   # extra and renamed columns
            test = test.with_columns(pl.lit(1.0).alias("unknown")).rename({test.columns[1]: "renamed"})
        elif kind == 2:                                   # all-null row
            test = test.select(pl.col("date_id"), *[pl.lit(None).alias(c) for c in test.columns[1:]])
        elif kind == 3:                                   # wrong dtypes: words in numeric cells
            test = test.with_columns(pl.lit("abc").alias(test.columns[2]), pl.lit("inf").alias(test.columns[3]))
        elif kind == 4:                                   # empty day and empty label batches
            test, batches = test.head(0), [b.head(0) for b in batches]
        elif kind == 5:                                   # pandas input, as the gateway may send
            test, batches = test.to_pandas(), [b.to_pandas() for b in batches]
        elif kind == 6:                                   # nulls in labels, no date column at all
            test = test.drop("date_id")
            batches = [b.with_columns(pl.lit(None).alias(b.columns[1])) for b in batches]
        reply = server.predict(test, *batches)
        check_reply(reply, [pl.from_pandas(b) if isinstance(b, pd.DataFrame) else b for b in batches])


def history_before(sample: Path, folder: Path, days: int = 300, seed: int = 0) -> Path:
    """A dataset folder whose train.csv is `days` of made-up history in the real sample's exact
    layout, ending the day before the sample's first test day and joining its first prices;
    test.csv, target_pairs.csv and the lagged label files are the sample's own."""
    test = pl.read_csv(sample / "test.csv", infer_schema_length=0)
    columns = [c for c in test.columns if c not in ("date_id", "is_scored")]
    first = int(test["date_id"].cast(pl.Int64)[0])
    rng = np.random.default_rng(seed)
    history = {"date_id": np.arange(first - days, first, dtype=np.int64)}
    for c in columns:
        observed = test[c].cast(pl.Float64, strict=False).drop_nulls()
        if observed.len() == 0:
            history[c] = np.full(days, np.nan)               # a listing that stopped: empty throughout
            continue
        steps = rng.standard_normal(days) * 0.01
        if observed[0] > 0:                                  # walk back from the first real price
            history[c] = observed[0] * np.exp(-np.cumsum(steps[::-1])[::-1])
        else:
            history[c] = observed[0] - np.cumsum(steps[::-1])[::-1]
    folder.mkdir(parents=True)
    pl.DataFrame(history).with_columns(pl.selectors.float().fill_nan(None)).write_csv(folder / "train.csv")
    for name in ("test.csv", "target_pairs.csv"):
        shutil.copy(sample / name, folder / name)
    shutil.copytree(sample / "lagged_test_labels", folder / "lagged_test_labels")
    return folder


def test_real_sample_served_by_a_model_trained_up_to_it(kaggle_sample, tmp_path, monkeypatch):
    """The real files (557 columns, 424 targets), served day by day by models trained on
    history that ends where the sample begins: the model answers every day (no fallback), and
    the replies equal the submit stage's batch forecasts of the same days, through the replay and
    through the gateway's contract (`gateway.serve` calling the package's own `predict`)."""
    dataset = history_before(kaggle_sample, tmp_path / "dataset")
    params, d = write_params(tmp_path / "project", data={"dir": str(dataset)})
    for command in PIPELINE[1:]:
        stage(command, params, in_process=True, d=d)
    for command in PER_LAG:                 # every head trained before pruning pools their scores
        for k in (1, 2, 3, 4):
            stage(command, params, in_process=True, d=d, k=k)
    stage(BLEND, params, in_process=True, d=d)
    stage(SUBMIT, params, in_process=True, d=d)
    submission, stats = replay.replay(kaggle_sample, d)
    expected = pl.read_csv(d / "submission/submission.csv")
    assert submission.height == 134 and submission.width == 1 + 424
    assert stats["fallbacks"] == 0
    assert submission.columns == expected.columns
    np.testing.assert_allclose(submission.to_numpy(), expected.to_numpy(), atol=1e-6)
    values = submission.drop("date_id").to_numpy()
    assert np.isfinite(values).all() and (values.std(axis=1) > 0).all()
    assert stats["scored_days"] > 0

    import spreadcast.serve.server as server_module
    monkeypatch.setattr(server_module, "_SERVER", None)            # a fresh process: nothing loaded yet
    monkeypatch.setenv(server_module.ARTIFACTS_ENV, str(d))
    served, seconds = gateway.serve(server_module.predict, kaggle_sample)
    assert served.height == 134 and len(seconds) == 134
    assert server_module._SERVER.fallbacks == 0
    np.testing.assert_allclose(served.to_numpy(), expected.to_numpy(), atol=1e-6)


def test_bundle_installs_and_replays_without_the_repository(tiny_project, tmp_path):
    """Install the exported bundle into a fresh virtual environment and replay the test days.

    The bundle is copied elsewhere (as an uploaded dataset) and put on the fresh venv's path,
    as the notebook does offline; the heavy runtime dependencies (torch, polars...) come from
    this environment's site-packages, as a competition image provides them.
    """
    import json
    import shutil
    import site
    import subprocess
    import venv
    from pathlib import Path

    bundle = tmp_path / "uploaded-bundle"
    shutil.copytree(tiny_project / "artifacts" / "bundle", bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert "notebook.ipynb" in manifest and "artifacts/finetune/lag1/model.pt" in manifest
    from spreadcast.io import sha256_file
    files = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest) == files                       # every file listed, nothing else
    assert all(sha256_file(bundle / name) == digest for name, digest in manifest.items())
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "spreadcast-bundle.pth").write_text(str(bundle / "src") + "\n")
    env = {"PYTHONPATH": ":".join(site.getsitepackages()), "PATH": "/usr/bin:/bin"}
    where = subprocess.run([str(python), "-c", "import spreadcast; print(spreadcast.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout
    assert str(bundle / "src") in where
    out = tmp_path / "replay.csv"
    subprocess.run([str(python), "-m", "spreadcast.serve.replay", "--dataset", str(tiny_project / "artifacts/synthetic/dataset"),
                    "--artifacts", str(bundle / "artifacts"), "--out", str(out)],
                   check=True, env=env, cwd=tmp_path, capture_output=True)
    expected = pl.read_csv(tiny_project / "artifacts/submission/submission.csv")
    np.testing.assert_allclose(pl.read_csv(out).to_numpy(), expected.to_numpy(), atol=1e-6)


FUZZ_DAYS = int(os.environ.get("SPREADCAST_FUZZ_DAYS", 500))     # SPREADCAST_FUZZ_DAYS=2000 for a longer run
SPECIAL = [float("nan"), float("inf"), float("-inf"), 0.0, -1.0, 1e300, -1e300]


def expected_columns(batches, every_target):
    """The reply's columns: the batches' target columns in their order, each once; every
    target when the batches name none."""
    seen = {}
    for b in batches:
        for c in getattr(b, "columns", []):
            if str(c) not in ("date_id", "label_date_id"):
                seen[str(c)] = None
    return list(seen) or list(every_target)


def mutate(frame: pl.DataFrame, rng, date_id: int, is_test: bool):
    """One malformed version of a day's frame: random combinations of every kind of damage."""
    p = 0.15
    if rng.random() < p:                                   # a random subset of the columns
        frame = frame.select([c for c in frame.columns if rng.random() < rng.random()])
    if rng.random() < p and frame.width:                   # columns in another order
        frame = frame.select(list(rng.permutation(frame.columns)))
    if rng.random() < p and frame.width:                   # other dtypes: text, integers, booleans
        for c in rng.choice(frame.columns, size=min(frame.width, 3), replace=False):
            dtype = [pl.String, pl.Int64, pl.Boolean, pl.Float32][int(rng.integers(4))]
            frame = frame.with_columns(pl.col(c).cast(dtype, strict=False))
    if rng.random() < p and frame.width:                   # nulls
        frame = frame.with_columns([pl.lit(None, dtype=frame[c].dtype).alias(c)
                                    for c in frame.columns if rng.random() < 0.3])
    if rng.random() < p:                                   # nan, inf, zero, negative, huge
        numeric = [c for c, t in frame.schema.items() if t.is_float() and c != "date_id"]
        frame = frame.with_columns([pl.lit(SPECIAL[int(rng.integers(len(SPECIAL)))]).alias(c)
                                    for c in numeric if rng.random() < 0.3])
    if rng.random() < p:                                   # extra and renamed columns
        frame = frame.with_columns(pl.lit(float(rng.normal())).alias(f"extra_{int(rng.integers(9))}"))
        if frame.width > 2:
            c = frame.columns[int(rng.integers(frame.width))]
            frame = frame.rename({c: c + "_renamed"})
    if rng.random() < p and "date_id" in frame.columns:    # the date: missing, text, far off, repeated
        choice = int(rng.integers(6))
        value = [None, "abc", 1.5, -5, 10**9, date_id + int(rng.integers(-3, 40))][choice]
        frame = frame.with_columns(pl.lit(value).alias("date_id"))
    if rng.random() < p:                                   # no rows, or the day twice
        frame = frame.head(0) if rng.random() < 0.5 else pl.concat([frame, frame], how="vertical_relaxed")
    if rng.random() < 0.05:                                # not a usable frame at all
        return [None, pl.DataFrame(), pd.DataFrame(), "text", 42][int(rng.integers(5))]
    if rng.random() < p:                                   # pandas, as the gateway may send it
        frame = frame.to_pandas()
        if rng.random() < 0.3 and frame.shape[1] > 1:      # pandas allows repeated column names
            frame = pd.concat([frame, frame.iloc[:, :1]], axis=1)
    return frame


def test_thousands_of_malformed_days_never_raise(tiny_project, caplog):
    """Random combinations of damage over thousands of days: predict() never raises and
    always returns one finite, non-constant row with the right columns in the right order."""
    caplog.set_level(logging.ERROR, logger="spreadcast.serve")     # one warning per fallback
    gc.collect()
    gc.freeze()              # the session's long-lived objects need not be scanned by each collection
    dataset = tiny_project / "artifacts/synthetic/dataset"
    server = Server(tiny_project / "artifacts")
    rng = np.random.default_rng(int(os.environ.get("SPREADCAST_FUZZ_SEED", 0)))
    test = pl.read_csv(dataset / "test.csv")
    lagged = [pl.read_csv(dataset / "lagged_test_labels" / f"test_labels_lag_{k}.csv") for k in (1, 2, 3, 4)]
    dates = test["date_id"].to_list()
    for i in range(FUZZ_DAYS):
        d = dates[i % len(dates)]
        day = test.filter(pl.col("date_id") == d)
        batches = [mutate(b.filter(pl.col("date_id") == d), rng, d, False) for b in lagged]
        reply = server.predict(mutate(day, rng, d, True), *batches)
        assert isinstance(reply, pl.DataFrame) and reply.height == 1, f"day {i}"
        assert reply.columns == expected_columns(batches, server.target_names), f"day {i}"
        row = reply.to_numpy()[0].astype(float)
        assert np.isfinite(row).all() and (row.size == 1 or row.std() > 0), f"day {i}"
    gc.unfreeze()
    assert 0 < server.fallbacks < FUZZ_DAYS
    # the damage left the state usable: a clean next day is forecast by the model
    d = int(server.tail.dates[-1]) + 1
    before = server.fallbacks
    day = test.head(1).with_columns(pl.lit(d).alias("date_id"))
    server.predict(day, *[b.head(1).with_columns(pl.lit(d).alias("date_id")) for b in lagged])
    assert server.fallbacks == before


def test_served_labels_are_exactly_the_published_ones(tiny_project):
    """After a replay the server holds every label of the lagged files, each from its
    publication day; a batch row that claims a label one day early is refused."""
    artifacts = tiny_project / "artifacts"
    dataset = artifacts / "synthetic/dataset"
    server = Server(artifacts)
    replay.replay(dataset, artifacts, server=server)
    expected = []
    for k in server.lags:
        frame = pl.read_csv(dataset / "lagged_test_labels" / f"test_labels_lag_{k}.csv")
        targets = [c for c in frame.columns if c.startswith("target_")]
        expected.append(frame.unpivot(index=["date_id", "label_date_id"], on=targets, variable_name="target")
                        .drop_nulls("value").with_columns(pl.lit(k, dtype=pl.Int64).alias("lag")))
    last_served = pl.read_csv(dataset / "test.csv", columns=["date_id"])["date_id"].max()
    expected = pl.concat(expected).filter(pl.col("date_id") <= last_served).sort("date_id", "target")
    tail = server.tail
    rows, cols = np.nonzero(np.isfinite(tail.published))
    held = pl.DataFrame({"date_id": tail.dates[rows], "target": np.asarray(server.target_names)[cols],
                         "value": tail.published[rows, cols]}).sort("date_id", "target")
    assert held.height == expected.height > 0
    assert held.equals(expected.select(held.columns))

    day = int(server.tail.dates[-1])
    lag1 = [t.name for t in server.targets if t.lag == 1]
    early = pl.DataFrame({"date_id": [day], "label_date_id": [day - 1], **{n: [0.5] for n in lag1}})
    on_time = early.with_columns(pl.lit(day - 2).alias("label_date_id"))
    published = np.full(len(server.targets), np.nan)
    server._labels_of(early, 1, day, published)
    assert np.isnan(published).all()
    server._labels_of(on_time, 1, day, published)
    assert np.isfinite(published).sum() == len(lag1)
    other = np.full(len(server.targets), np.nan)
    server._labels_of(on_time, 1, day + 1, other)
    assert np.isnan(other).all()


def test_refit_models_are_the_ones_served(tiny_project, tmp_path):
    """With `submit.refit`, the submission comes from heads refit on every labelled day, and
    serving the same artifacts replays that submission, not the fine-tuned heads' forecasts."""
    import shutil
    import subprocess
    import sys

    import yaml

    from conftest import ROOT

    shutil.copytree(tiny_project / "artifacts", tmp_path / "artifacts",
                    ignore=shutil.ignore_patterns("bundle", ".work", "submission"))
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["submit"].update(refit=True, refit_epochs=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = subprocess.run([sys.executable, str(ROOT / "stages/submit.py"), "--params", "params.yaml",
                          "--data", "artifacts/data", "--tensors", "artifacts/tensors",
                          "--models", "artifacts/finetune", "--blend", "artifacts/blend",
                          "--oracle", "artifacts/synthetic/oracle",
                          "--out", "artifacts/submission", "--metrics", "artifacts/metrics/submit.json",
                          "--train", "artifacts/train", "--work", "artifacts/.work/refit"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    refit = pl.read_csv(tmp_path / "artifacts/submission/submission.csv")
    finetuned = pl.read_csv(tiny_project / "artifacts/submission/submission.csv")
    assert np.abs(refit.drop("date_id").to_numpy() - finetuned.drop("date_id").to_numpy()).max() > 1e-4
    served, stats = replay.replay(tmp_path / "artifacts/synthetic/dataset", tmp_path / "artifacts")
    assert stats["fallbacks"] == 0
    np.testing.assert_allclose(served.to_numpy(), refit.to_numpy(), atol=1e-6)


def test_without_an_oracle_submit_scores_what_the_test_files_reveal(tiny_project, tmp_path):
    """On real data (no synthetic oracle) `submit` scores the submission against the labels the
    lagged test label files reveal for the test days, as the replay of `predict()` scores what
    it served: the same days and the same score, beside a constant ranking."""
    import subprocess
    import sys

    import yaml

    from conftest import ROOT

    shutil.copytree(tiny_project / "artifacts", tmp_path / "artifacts",
                    ignore=shutil.ignore_patterns("bundle", ".work", "submission"))
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["submit"].update(refit=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = subprocess.run([sys.executable, str(ROOT / "stages/submit.py"), "--params", "params.yaml",
                          "--data", "artifacts/data", "--tensors", "artifacts/tensors",
                          "--models", "artifacts/finetune", "--blend", "artifacts/blend",
                          "--oracle", "no-oracle-here", "--out", "artifacts/submission",
                          "--metrics", "artifacts/metrics/submit.json", "--work", "artifacts/.work/refit"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    metrics = yaml.safe_load((tmp_path / "artifacts/metrics/submit.json").read_text())
    assert metrics["answers"] == "labels revealed by the test files" and "ceiling_sharpe" not in metrics
    dataset = tmp_path / "artifacts/synthetic/dataset"
    test = pl.read_csv(dataset / "test.csv", infer_schema_length=None)
    lagged = {lag: pl.read_csv(dataset / "lagged_test_labels" / f"test_labels_lag_{lag}.csv", infer_schema_length=None)
              .with_columns(pl.col("date_id").cast(pl.Int64)) for lag in params["data"]["lags"]}
    expected = replay._score(pl.read_csv(tmp_path / "artifacts/submission/submission.csv"), test, lagged)
    assert metrics["scored_days"] == expected["scored_days"] > 10
    assert metrics["test_sharpe"] == pytest.approx(expected["sharpe"], abs=1e-9)
    assert np.isfinite(metrics["const_rank_sharpe"]) and metrics["const_rank_sharpe"] != metrics["test_sharpe"]
    # the ridge on every model input, refit on every published label, scored on the same days
    from spreadcast.evaluation.walkforward import fit_ridge
    from spreadcast.features import windows
    t = windows.load(tmp_path / "artifacts/tensors")
    baseline = yaml.safe_load((tmp_path / "artifacts/blend/blend.json").read_text())["ridge_baseline"]
    published = np.flatnonzero(np.isfinite(t.raw_labels).any(axis=1))
    x = t.features.numpy()[:, t.model_columns]
    w, b = fit_ridge(x, t.labels.numpy(), baseline["alpha"], published, baseline["halflife"])
    days = test["date_id"].cast(pl.Int64).to_numpy()
    ridge = pl.DataFrame({"date_id": days, **dict(zip(t.target_names, (x[t.rows_of(days)] @ w + b).T))})
    assert metrics["ridge_sharpe"] == pytest.approx(replay._score(ridge, test, lagged)["sharpe"], abs=1e-9)
    assert "against the labels revealed by the test files" in out.stdout


def test_history_cut_to_the_tail_still_equals_the_submission(tiny_project, monkeypatch):
    """Serving keeps only the last TAIL_DAYS days; cut to fewer days than the tiny market has
    (but enough for the longest feature window), the replay still equals the submission."""
    from spreadcast.serve import server as server_module

    monkeypatch.setattr(server_module, "TAIL_DAYS", 100)      # the tiny market has 260 train days
    server = Server(tiny_project / "artifacts")
    assert server.tail.dates.size == 100
    submission, stats = replay.replay(tiny_project / "artifacts/synthetic/dataset", tiny_project / "artifacts",
                                      server=server)
    assert server.tail.dates.size == 100                       # the window slides, it does not grow
    expected = pl.read_csv(tiny_project / "artifacts/submission/submission.csv")
    assert stats["fallbacks"] == 0
    np.testing.assert_allclose(submission.to_numpy(), expected.to_numpy(), atol=1e-6)


@pytest.mark.parametrize("defect", ["raises", "two_rows", "date_id", "missing_column", "too_slow"])
def test_the_gateway_emulation_refuses_what_the_competition_refuses(kaggle_sample, defect):
    """Control for the gateway emulation: each breach of the contract fails the run."""
    def predict(test, *batches):
        if defect == "raises":
            raise ValueError("boom")
        columns = [c for b in batches for c in b.columns if c not in ("date_id", "label_date_id")]
        reply = pl.DataFrame({c: [float(i)] for i, c in enumerate(columns)})
        if defect == "two_rows":
            return pl.concat([reply, reply])
        if defect == "date_id":
            return reply.with_columns(pl.lit(1).alias("date_id"))
        if defect == "missing_column":
            return reply.drop(columns[-1])
        return reply

    with pytest.raises(gateway.GatewayError):
        gateway.serve(predict, kaggle_sample, reply_limit_s=-1.0 if defect == "too_slow" else 300.0)


def test_a_repeated_day_replaces_the_last_one(tiny_project):
    """Serving the last day again with other prices, then with its own, gives back the first
    reply: the state before the day (running features, the input window, the heads' day terms,
    the prior) is restored, not stepped twice."""
    artifacts = tiny_project / "artifacts"
    dataset = artifacts / "synthetic/dataset"
    server = Server(artifacts)
    dates = pl.read_csv(dataset / "test.csv", columns=["date_id"])["date_id"].unique(maintain_order=True).to_list()
    for d in dates[:5]:
        test, batches = day_inputs(dataset, d)
        first = server.predict(test, *batches)
    window = server.inputs.copy()
    prices = [c for c in server.columns if test[c][0] not in (None, "")]       # the price columns
    moved = test.with_columns([(pl.col(c).cast(pl.Float64) * 1.5).cast(pl.Utf8) for c in prices])
    other = server.predict(moved, *batches)
    assert not np.allclose(other.to_numpy(), first.to_numpy())     # the moved prices change the forecast
    again = server.predict(test, *batches)
    np.testing.assert_allclose(again.to_numpy(), first.to_numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(server.inputs, window)
    assert server.fallbacks == 0


def test_the_input_window_slides_and_slides_back_like_a_shifted_array():
    """The served window (views into a buffer twice as long, moved back once every `length`
    days) holds what shifting the whole array each day would, also when a day is undone just
    after the rows moved back."""
    from spreadcast.serve.server import _Window

    rng = np.random.default_rng(0)
    window, want = _Window(4, 3), [np.zeros((4, 3), dtype=np.float32), np.ones((4, 3), dtype=np.float32)]
    undone = []
    for day in range(13):
        day_rows = [rng.normal(size=3).astype(np.float32), (rng.random(3) < 0.5).astype(np.float32)]
        first = [w[0].copy() for w in want]
        window.push(*day_rows)
        want = [np.vstack([w[1:], r]) for w, r in zip(want, day_rows)]
        if window.start == 0 or day % 4 == 1:          # just after a move back, and elsewhere
            undone.append(window.start)
            window.pop(*first)
            np.testing.assert_array_equal(window.inputs, np.vstack([first[0], want[0][:-1]]))
            np.testing.assert_array_equal(window.missing, np.vstack([first[1], want[1][:-1]]))
            window.push(*day_rows)
        np.testing.assert_array_equal(window.inputs, want[0])
        np.testing.assert_array_equal(window.missing, want[1])
        assert window.inputs.flags.c_contiguous
    assert 0 in undone and max(undone) > 0
