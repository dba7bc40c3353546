"""The served blend: bounded weights that follow the component that carries the signal, a prior
that sees each label row only once every lag of it is published."""
import numpy as np
import pytest

from spreadcast.evaluation import blend, metric


def market(days=300, targets=40, seed=0):
    rng = np.random.default_rng(seed)
    lags = np.repeat([1, 2], targets // 2)
    drift = rng.normal(0, 1, targets)                       # a persistent per-target mean
    signal = rng.normal(0, 1, (days, targets))              # a day-by-day predictable part
    labels = 0.3 * drift + 0.3 * signal + rng.normal(0, 1, (days, targets))
    return rng, lags, drift, signal, labels


def test_bounded_least_squares_is_exact_on_the_box():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 3))
    y = x @ np.array([0.2, -0.5, 0.9]) + 0.01 * rng.normal(size=500)
    w = blend.bounded_least_squares(x, y, upper=0.5)
    np.testing.assert_allclose(w, [0.2, 0.0, 0.5], atol=0.02)       # clipped below at 0, above at 0.5
    loss = lambda v: ((y - x @ v) ** 2).sum()
    for _ in range(200):                                            # no point of the box does better
        assert loss(w) <= loss(rng.uniform(0, 0.5, 3)) + 1e-9


@pytest.mark.parametrize("carrier", ["transformer", "prior", "own"])
def test_weights_follow_the_component_with_the_signal(carrier):
    rng, lags, drift, signal, labels = market()
    prior = blend.prior_series(labels, delay=3)
    noise = rng.normal(size=labels.shape)
    components = {"transformer": signal if carrier == "transformer" else noise,
                  "ridge": rng.normal(size=labels.shape), "prior": prior,
                  "own": signal if carrier == "own" else rng.normal(size=labels.shape)}
    fit_rows, test_rows = slice(50, 200), slice(200, 300)
    fitted = blend.fit({k: v[fit_rows] for k, v in components.items()}, labels[fit_rows], lags, 0.3)
    for lag, w in fitted.weights.items():
        assert all(0.0 <= v <= 0.3 for v in w)
        best = int(np.argmax(w))
        assert blend.COMPONENTS[best] == carrier, (lag, w)
    held = {k: v[test_rows] for k, v in components.items()}
    blended = metric.summary(labels[test_rows], fitted.combine(held, lags))["sharpe"]
    alone = metric.summary(labels[test_rows], held[carrier])["sharpe"]
    assert blended > 0.8 * alone > 0


def test_nothing_to_keep_falls_back_to_the_prior():
    rng, lags, *_ , labels = market(seed=3)
    anti = {name: -labels + rng.normal(size=labels.shape) for name in blend.COMPONENTS}   # all point the wrong way
    fitted = blend.fit(anti, labels, lags, 0.3)
    for w in fitted.weights.values():
        assert w[0] == w[1] == w[3] == 0.0 and 0.0 < w[2] < 0.01


def _evidence(drift: float, signal: float, seed: int, parts: int = 4, days: int = 150):
    """(components, labels) of `parts` consecutive parts: a per-target mean of size `drift` the
    prior learns, a day-by-day part of size `signal` the transformer sees, the rest noise."""
    rng = np.random.default_rng(seed)
    targets = 40
    lags = np.repeat([1, 2], targets // 2)
    mean, moving = rng.normal(size=targets), rng.normal(size=(parts * days, targets))
    labels = drift * mean + signal * moving + rng.normal(size=(parts * days, targets))
    prior = blend.prior_series(labels, delay=3)           # 0.5 for every target on the first 3 days
    components = {"transformer": moving + rng.normal(size=labels.shape), "ridge": rng.normal(size=labels.shape),
                  "prior": prior, "own": rng.normal(size=labels.shape)}
    out = [({n: c[k * days:(k + 1) * days] for n, c in components.items()}, labels[k * days:(k + 1) * days])
           for k in range(parts)]
    return out, lags


def test_the_blend_falls_back_to_the_prior_only_where_it_holds_and_nothing_else_adds():
    parts, lags = _evidence(drift=0.2, signal=0.0, seed=0)          # a drift, and noise beside it
    gate = blend.fallback(parts, lags, 0.3)
    assert gate["prior_alone"] and gate["prior_sharpe"] >= gate["prior_floor"] > 0
    assert gate["days"] == 600 - 3 and gate["margin"] == pytest.approx(1 / np.sqrt(597), abs=1e-4)
    served = blend.prior_alone(lags, 0.3)
    components, labels = parts[-1]
    np.testing.assert_allclose(metric.daily_rank_corr(labels, served.combine(components, lags), strict=False),
                               metric.daily_rank_corr(labels, components["prior"], strict=False))
    parts, lags = _evidence(drift=0.2, signal=0.3, seed=1)          # the transformer adds a day-by-day part
    gate = blend.fallback(parts, lags, 0.3)
    assert not gate["prior_alone"] and gate["blend_sharpe"] > gate["prior_sharpe"] + gate["margin"]
    parts, lags = _evidence(drift=0.0, signal=0.0, seed=2)          # nothing anywhere: no fallback to noise
    gate = blend.fallback(parts, lags, 0.3)
    assert not gate["prior_alone"] and gate["prior_sharpe"] < gate["prior_floor"]


def test_prior_uses_a_label_row_only_when_complete():
    """The prior at row t averages the daily ranks of rows <= t - delay; changing any later row
    (or the row t - delay + 1) leaves it unchanged."""
    _, _, _, _, labels = market(days=60)
    delay = 5
    prior = blend.prior_series(labels, delay)
    t = 40
    expected = np.nanmean(blend.daily_ranks(labels[:t - delay + 1]), axis=0)
    np.testing.assert_allclose(prior[t], expected)
    later = labels.copy()
    later[t - delay + 1:] = np.random.default_rng(9).normal(size=later[t - delay + 1:].shape)
    np.testing.assert_array_equal(blend.prior_series(later, delay)[: t + 1], prior[: t + 1])
    assert (prior[:delay - 1] == 0.5).all()                         # nothing complete yet


def test_round_trip_and_refusal():
    fitted = blend.Blend(weights={1: [0.1, 0.0, 0.2, 0.05]}, max_weight=0.3)
    assert blend.Blend.from_dict(fitted.to_dict()) == fitted
    bad = fitted.to_dict() | {"components": ["ridge", "transformer", "prior"]}
    with pytest.raises(ValueError, match="components"):
        blend.Blend.from_dict(bad)


def test_pooled_weights_are_one_fit_over_every_lag():
    """With `pool_lags` every lag is served the weights of one fit on all targets together,
    which is the per-lag fit of a market where every target has the same lag."""
    rng, lags, drift, signal, labels = market(seed=5)
    components = {"transformer": signal + rng.normal(size=labels.shape), "ridge": rng.normal(size=labels.shape),
                  "prior": blend.prior_series(labels, delay=3), "own": rng.normal(size=labels.shape)}
    per_lag = blend.fit(components, labels, lags, 0.3)
    pooled = blend.fit(components, labels, lags, 0.3, pool_lags=True)
    one = blend.fit(components, labels, np.ones_like(lags), 0.3).weights[1]
    assert set(pooled.weights) == {1, 2}
    assert pooled.weights[1] == pooled.weights[2] == one
    assert per_lag.weights[1] != per_lag.weights[2]                 # each lag's own fit differs
    np.testing.assert_allclose(pooled.combine(components, lags), blend.fit(
        components, labels, np.ones_like(lags), 0.3).combine(components, np.ones_like(lags)))


def _blend_inputs(tiny_project, tmp_path, **settings):
    """The blend stage's inputs copied from the tiny project under `tmp_path`, with `settings`
    changed in its params' `blend` section; returns the artifacts folder and the params."""
    import shutil

    import yaml

    art = tmp_path / "artifacts"
    for name in ("data", "tensors", "train", "finetune"):
        shutil.copytree(tiny_project / "artifacts" / name, art / name)
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["blend"].update(settings)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return art, params


def test_blend_stage_weighs_the_transformer_on_the_folds_it_forecast(tiny_project, tmp_path):
    """Fold forecasts in `train/lagK/evidence` (`train.evidence_folds`) join the transformer's
    evidence: near-perfect forecasts of the last fold raise its weight on every lag and the fold's
    report scores it; forecasts dated other than the fold's days, a file without its pair, or
    forecasts missing for one lag head stop the stage with the file or fold named."""
    import json
    import shutil
    import subprocess
    import sys

    from conftest import BLEND, ROOT, stage
    from spreadcast.evaluation.walkforward import embargo_of, folds
    from spreadcast.features import windows

    art, params = _blend_inputs(tiny_project, tmp_path, fallback=False)   # the weights, not the prior alone
    n_folds, lags = params["walkforward"]["folds"], params["data"]["lags"]
    tensors = windows.load(art / "tensors")
    rows = folds(tensors.splits.train, n_folds, embargo_of(tensors.target_lags))[-1][1]
    for lag in lags:                                      # first without any fold forecasts
        shutil.rmtree(art / "train" / f"lag{lag}" / "evidence", ignore_errors=True)
    stage(BLEND, tmp_path / "params.yaml", in_process=True, d=str(art))
    theirs = json.loads((art / "blend" / "blend.json").read_text())
    assert all("transformer" not in e["sharpe"] for e in theirs["walk_forward"][:-1])
    rng = np.random.default_rng(0)
    for lag in lags:
        folder = art / "train" / f"lag{lag}" / "evidence"
        folder.mkdir()
        np.save(folder / f"fold{n_folds}_dates.npy", tensors.date_ids[rows])
        truth = np.nan_to_num(tensors.raw_labels[rows][:, tensors.head(lag)])
        np.save(folder / f"fold{n_folds}_forecast.npy", truth + 0.5 * truth.std() * rng.standard_normal(truth.shape))
    stage(BLEND, tmp_path / "params.yaml", in_process=True, d=str(art))
    ours = json.loads((art / "blend" / "blend.json").read_text())
    for lag in map(str, lags):
        assert ours["blend"]["weights"][lag][0] > theirs["blend"]["weights"][lag][0]
    *earlier, last, validation = ours["walk_forward"]
    assert last["sharpe"]["transformer"] > 1.0 and all("transformer" not in e["sharpe"] for e in earlier)
    assert "transformer" in validation["sharpe"]

    argv = [sys.executable, str(ROOT / "stages" / "blend.py"), "--params", str(tmp_path / "params.yaml"),
            *BLEND.format(d=str(art)).split()[1:]]
    dates = art / "train" / f"lag{lags[0]}" / "evidence" / f"fold{n_folds}_dates.npy"
    np.save(dates, tensors.date_ids[rows] + 1)
    refused = subprocess.run(argv, capture_output=True, text=True)
    assert refused.returncode == 1 and str(dates) in refused.stderr
    forecast = dates.parent / f"fold{n_folds}_forecast.npy"
    forecast.unlink()
    refused = subprocess.run(argv, capture_output=True, text=True)
    assert refused.returncode == 1 and f"{forecast}: missing beside its pair" in refused.stderr
    shutil.rmtree(dates.parent)
    refused = subprocess.run(argv, capture_output=True, text=True)
    assert refused.returncode == 1 and f"fold {n_folds}'s forecasts are missing" in refused.stderr
    assert json.loads((art / "blend" / "blend.json").read_text()) == ours        # nothing replaced on failure


@pytest.mark.parametrize("centre", [True, False])
def test_blend_stage_leaves_each_targets_constant_to_the_prior(tiny_project, tmp_path, centre):
    """`blend.centre`: the served ridge and own-series fit have zero mean over their fitting rows
    for every target (no constant ranking of their own), while the ridge baseline keeps its
    intercept; off, both components keep each target's mean."""
    import json

    from conftest import BLEND, stage
    from spreadcast.evaluation import own
    from spreadcast.evaluation.walkforward import recency_weights
    from spreadcast.features import windows
    from spreadcast.io import load_array

    art, _ = _blend_inputs(tiny_project, tmp_path, centre=centre)
    stage(BLEND, tmp_path / "params.yaml", in_process=True, d=str(art))
    out = art / "blend"
    meta = json.loads((out / "blend.json").read_text())
    assert meta["centre"] is centre
    t = windows.load(art / "tensors")
    train, y = t.splits.train, t.labels.numpy().astype(np.float64)

    def weighted_means(name, columns, halflife):
        w = recency_weights(train, halflife)
        forecast = t.features.numpy()[train][:, columns] @ load_array(out / f"{name}_weights.npy") \
            + load_array(out / f"{name}_intercept.npy")
        label = np.nan_to_num(y[train], nan=0.0)
        return w @ forecast / w.sum(), w @ label / w.sum()

    served, label_mean = weighted_means("ridge_train", t.columns_of(meta["ridge_inputs"]), meta["ridge"]["halflife"])
    np.testing.assert_allclose(served, 0.0 if centre else label_mean, atol=1e-6)
    baseline, label_mean = weighted_means("ridge_baseline", t.model_columns, meta["ridge_baseline"]["halflife"])
    np.testing.assert_allclose(baseline, label_mean, atol=1e-6)
    z = own.tensor_inputs(t)[train]
    offset = load_array(out / "own_train_offset.npy")
    assert bool(offset.any()) is centre
    np.testing.assert_allclose(own.predict(z, load_array(out / "own_train_coef.npy"), offset).mean(axis=0)
                               if centre else offset, 0.0, atol=1e-9)


def test_a_level_signal_beyond_the_screen_reaches_the_served_ridge(tmp_path):
    """A market whose targets move with two published rate levels, and a screen too short to keep
    them: the prescreen exports every usable level feature anyway, the folds choose the blend's
    ridge on them alone, that ridge (centred: the levels' moves alone) scores on the holdout, and
    serving day by day gives the submission exactly (the server engineers the levels it reads)."""
    import json

    import polars as pl

    from conftest import BLEND, EVALUATE, PER_LAG, PIPELINE, SUBMIT, stage, write_params
    from spreadcast.serve import replay

    params, d = write_params(tmp_path, synthetic={"n_levels": 2, "level_strength": 0.5, "signal_strength": 0.0,
                                                  "n_train_days": 420, "lags": [1], "targets_per_lag": 16},
                             data={"lags": [1]}, prescreen={"top_k": 6, "rank_by": "random"},
                             windows={"history": 8, "val_days": 60, "holdout_days": 60, "embargo": 5})
    for command in PIPELINE:
        stage(command, params, in_process=True, d=d)
    registry = json.loads((d / "features" / "registry.json").read_text())
    levels = ["RATE_1__level", "RATE_2__level"]
    assert registry["level_inputs"] == levels
    assert not set(levels) & set(registry["model_inputs"])        # beyond the (label-blind, short) screen
    assert json.loads((d / "tensors" / "meta.json").read_text())["level_inputs"] == levels
    for command in PER_LAG:
        stage(command, params, in_process=True, d=d, k=1)
    stage(BLEND, params, in_process=True, d=d)
    fitted = json.loads((d / "blend" / "blend.json").read_text())
    assert fitted["ridge"]["columns"] == "levels" and fitted["ridge_inputs"] == levels
    by = {e["columns"]: e["mean_sharpe"] for e in fitted["ridge"]["by_columns"]}
    assert by["levels"] > by[0] + fitted["ridge"]["columns_margin"]
    stage(EVALUATE, params, in_process=True, d=d)
    metrics = json.loads((d / "metrics" / "evaluate.json").read_text())
    assert metrics["blend_ridge_sharpe"] > 0.3          # the levels' moves, without any constant (centred)
    stage(SUBMIT, params, in_process=True, d=d)
    scored = json.loads((d / "metrics" / "submit.json").read_text())
    assert scored["scored_days"] + scored["scored_days_unlabelled"] == 90     # synthetic.n_scored_days
    assert np.isfinite(scored["test_sharpe"])
    submission, stats = replay.replay(d / "dataset", d)
    expected = pl.read_csv(d / "submission" / "submission.csv")
    assert stats["fallbacks"] == 0
    np.testing.assert_allclose(submission.to_numpy(), expected.to_numpy(), atol=1e-6)


def test_keep_levels_makes_every_level_feature_a_model_input(tmp_path):
    """`prescreen.keep_levels`: the level features join the screen's inputs on the training days
    and on every fold's fitting days, and the report says why; off (the default), a short
    label-blind screen leaves them out."""
    import json

    from conftest import PIPELINE, stage, write_params

    levels = ["RATE_1__level", "RATE_2__level", "RATE_3__level"]
    found = {}
    for keep in (True, False):
        params, d = write_params(tmp_path / str(keep), synthetic={"n_levels": 3, "n_train_days": 300, "n_us": 20},
                                 prescreen={"top_k": 6, "rank_by": "random", "keep_levels": keep})
        for command in PIPELINE[:4]:
            stage(command, params, in_process=True, d=d)
        found[keep] = json.loads((d / "features" / "registry.json").read_text())
        report = {r["feature"]: r for r in json.loads((d / "features" / "report.json").read_text())}
        assert found[keep]["level_inputs"] == levels
        assert all(report[n]["kept"] is (keep or n in found[keep]["model_inputs"]) for n in levels)
    assert not set(levels) & set(found[False]["model_inputs"])
    assert found[True]["model_inputs"] == found[False]["model_inputs"] + levels
    for with_levels, without in zip(found[True]["fold_inputs"], found[False]["fold_inputs"]):
        assert with_levels == without + levels


def test_blend_stage_records_its_fallback_decision(tiny_project, tmp_path):
    """`blend.json` says what the evidence gave the blend and the prior, and serves the prior alone
    exactly where it says so; with `blend.fallback` off it records nothing and keeps the weights."""
    import json

    from conftest import BLEND, stage

    art, _ = _blend_inputs(tiny_project, tmp_path, fallback=True)
    stage(BLEND, tmp_path / "params.yaml", in_process=True, d=str(art))
    record = json.loads((art / "blend" / "blend.json").read_text())
    gate = record["fallback"]
    assert set(gate) == {"prior_alone", "blend_sharpe", "prior_sharpe", "days", "margin", "prior_floor"}
    assert gate["days"] > 0 and gate["margin"] == pytest.approx(1 / np.sqrt(gate["days"]), abs=1e-4)
    prior_only = [[0.0, 0.0, record["blend"]["max_weight"], 0.0]] * len(record["blend"]["weights"])
    assert (list(record["blend"]["weights"].values()) == prior_only) == gate["prior_alone"]
    assert gate["prior_alone"] == (gate["prior_sharpe"] >= gate["prior_floor"]
                                   and gate["blend_sharpe"] <= gate["prior_sharpe"] + gate["margin"])
    kept = json.loads((tiny_project / "artifacts" / "blend" / "blend.json").read_text())   # built with it off
    assert kept["fallback"] is None and list(kept["blend"]["weights"].values()) != prior_only
