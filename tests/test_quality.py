"""bench/quality.py: the quality table's interval and its row, from a real pipeline run."""
import importlib.util
import json

import numpy as np
import pytest
import yaml

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("quality", ROOT / "bench" / "quality.py")
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)


def test_block_bootstrap_brackets_the_difference_and_narrows_with_days():
    rng = np.random.default_rng(0)
    common = rng.standard_normal(2000) * 0.1
    model = common + 0.05 + 0.05 * rng.standard_normal(2000)
    best = common + 0.05 * rng.standard_normal(2000)

    def diff(a, b):
        return a.mean() / a.std() - b.mean() / b.std()

    lo, hi = quality.block_bootstrap(model, best, draws=500)
    assert lo < diff(model, best) < hi and lo > 0
    short = quality.block_bootstrap(model[:200], best[:200], draws=500)
    assert short[1] - short[0] > hi - lo
    assert quality.block_bootstrap(best, best, draws=100) == [0.0, 0.0]
    with_gaps = model.copy()
    with_gaps[::7] = np.nan
    assert all(np.isfinite(quality.block_bootstrap(with_gaps, best, draws=100)))


def test_summary_row_has_the_benchmarks_shape(tiny_project):
    row = quality.summarise(tiny_project, draws=200)
    assert set(row) == {"days", "model", "ridge", "const_rank", "ceiling", "model_minus_best_ci90"}
    assert row["days"] == 40                                   # the tiny config's holdout days
    assert row["ceiling"] is not None and row["ceiling"] > 0.5
    lo, hi = row["model_minus_best_ci90"]
    best = max(row["ridge"], row["const_rank"])
    assert lo <= row["model"] - best <= hi
    assert "| tiny |" in quality.table({"tiny": row})


def test_every_market_is_a_valid_configuration():
    from spreadcast import config
    import yaml

    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, overrides in quality.MARKETS.items():
        params = {section: dict(values) for section, values in base.items()}
        for section, values in overrides.items():
            params[section].update(values)
        synthetic = config.build(config.SyntheticConfig, params["synthetic"], "synthetic")
        data = config.build(config.DataConfig, params["data"], "data")
        if name != "real_dev":
            assert data.lags == synthetic.lags, name


def test_reseeding_changes_only_the_seed():
    base_seed = yaml.safe_load((ROOT / "params.yaml").read_text())["synthetic"]["seed"]
    assert quality.reseeded({}, 100) == {"synthetic": {"seed": base_seed + 100}}
    flip = quality.MARKETS["flip"]
    moved = quality.reseeded(flip, 100)
    assert moved["synthetic"].pop("seed") == flip["synthetic"]["seed"] + 100
    assert moved["synthetic"] == {k: v for k, v in flip["synthetic"].items() if k != "seed"}
    assert flip["synthetic"]["seed"] == 15                       # the table's own markets untouched
    reversion = quality.reseeded(quality.MARKETS["reversion"], 1)
    assert reversion["data"] == {"lags": [1, 2]}


def test_what_is_served_is_scored_on_real_prices(tmp_path):
    """A project reading a dataset of its own (real_dev) is also submitted and scored on its test
    days; one reading the generated market is not (the holdout and the oracle measure it)."""
    real, synthetic = tmp_path / "real", tmp_path / "synthetic"
    for root, folder in ((real, str(quality.REAL_DEV)), (synthetic, quality.GENERATED)):
        (root / "artifacts/metrics").mkdir(parents=True)
        (root / "params.yaml").write_text(yaml.safe_dump({"data": {"dir": folder}}))
    assert quality.real_prices(real) and not quality.real_prices(synthetic)
    assert quality.MARKETS["real_dev"]["data"]["dir"] != quality.GENERATED
    assert yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["dir"] == quality.GENERATED
    (real / "artifacts/metrics/submit.json").write_text(json.dumps(
        {"scored_days": 248, "test_sharpe": 0.01234567, "ridge_sharpe": 0.04, "const_rank_sharpe": -0.0179}))
    assert quality.served(real) == {"days": 248, "model": 0.0123, "ridge": 0.04, "const_rank": -0.0179}


_lab_spec = importlib.util.spec_from_file_location("component_lab", ROOT / "bench" / "component_lab.py")
component_lab = importlib.util.module_from_spec(_lab_spec)
_lab_spec.loader.exec_module(component_lab)


def test_component_lab_rebuilds_the_served_blend_and_scores_variants(tiny_project):
    project = component_lab.Project(tiny_project)
    base = project.score()
    assert abs(base["model"] - project.reported) < 1e-3        # the evidence is the blend stage's own
    refit = project.refit()
    assert refit["ridge"] != base["ridge"] and np.isfinite(refit["model"])   # more days, another fit
    assert project.online(every=10_000)["ridge"] != base["ridge"]
    families = project.families()
    assert families["families"] and set(families["families"]) <= {
        name.rsplit("__", 1)[-1] for name in project.tensors.feature_names}
    assert np.isfinite(project.rank_target()["model"])
    assert np.isfinite(project.sharpe()["model"])
    reduced = project.reduced_rank()
    assert reduced["rank"] in component_lab.RANKS and np.isfinite(reduced["model"])
    stack = project.stack()
    assert stack["families"] >= 1 and np.isfinite(stack["model"])
    other = project.centre()                                        # blend.centre the other way
    assert other["centre"] is not project.centred and other["ridge"] != base["ridge"] and np.isfinite(other["model"])
    variants = (project.pooled(), project.no_transformer(), project.fold_transformer(1),
                project.fold_transformer(1, validation=False))
    for variant in variants:                                       # the weights or the transformer change
        assert np.isfinite(variant["model"]) and (variant["ridge"], variant["own"]) == (base["ridge"], base["own"])
    per_day = project.per_day()                                     # another fit of the ridge alone
    assert per_day["ridge"] != base["ridge"] and per_day["own"] == base["own"] and np.isfinite(per_day["model"])
    widest = project.widest()
    assert widest["columns"] == component_lab.widest_within_margin(*_options(project)) and np.isfinite(widest["model"])
    offset = project.transformer_offset()                           # the transformer less its mean
    assert (offset["ridge"], offset["own"]) == (base["ridge"], base["own"]) and np.isfinite(offset["model"])
    for scheme in ("loo", "expanding", "last"):                     # the weights shrunk, or the prior alone
        gated = project.shrunk(component_lab.GATE, True, scheme)
        assert gated["cv"]["penalty"] in ("inf", "0.0") and np.isfinite(gated["model"])
        assert (gated["ridge"], gated["own"]) == (base["ridge"], base["own"])
    weighed = project.weigh_variant()                               # the folds weighed by their fitting days
    assert project.weigh == "equal" and weighed["weigh"] == "fit_days" and np.isfinite(weighed["model"])
    mine = project.own_per_target()
    assert mine["own_alpha"] in component_lab.OWN_PER_TARGET_ALPHAS and mine["own"] != base["own"]
    assert mine["ridge"] == base["ridge"] and np.isfinite(mine["model"])


def _options(project):
    """The lab project's ridge candidates on the folds and their margin, as the blend stage has them."""
    t, cfg = project.tensors, project.cfg
    options, _, margin = component_lab.ridge_options(
        t, project.every, project.y, project.n_folds, project.delay, cfg["ridge_alphas"], cfg["ridge_halflives"],
        component_lab.ridge_candidates(t, cfg["ridge_columns"], project.levels), not project.centred)
    return options, margin


def test_the_widest_choice_within_the_margin_prefers_reading_more():
    """Among candidates within the margin of the best fold mean, every input, then the larger
    count, then a named candidate; a candidate beyond the margin wins alone."""
    class Option:
        def __init__(self, mean):
            self.mean_sharpe = mean

    close = {2: Option(0.418), 4: Option(0.416), 8: Option(0.36), 0: Option(0.18), "levels": Option(0.40)}
    assert component_lab.widest_within_margin(close, 0.031) == 4
    assert component_lab.widest_within_margin(close, 0.5) == 0
    alone = {2: Option(0.05), 0: Option(0.04), "levels": Option(0.13)}
    assert component_lab.widest_within_margin(alone, 0.039) == "levels"
    assert component_lab.widest_within_margin({2: Option(0.05), "levels": Option(0.06)}, 0.039) == 2


def test_each_targets_own_ridge_finds_its_own_rule():
    """own_per_target_fit: targets whose labels follow their own inputs with different signs get
    their own coefficients (a pooled fit would average them away); forecasts are centred on the
    fitting rows."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((400, 6, 3))
    truth = np.array([1.0, -1.0, 0.5, -0.5, 0.0, 2.0])
    y = z[:, :, 0] * truth + 0.5 * rng.standard_normal((400, 6))
    y[::7, 2] = np.nan                                              # missing labels are skipped
    rows = np.arange(300)
    coef = component_lab.own_per_target_fit(z, y, rows, alpha=0.01)
    np.testing.assert_allclose(coef[:, 0], truth, atol=0.15)
    assert np.abs(coef[:, 1:]).max() < 0.15
    fitted = component_lab.own_per_target_forecast(z, coef, rows, rows)
    np.testing.assert_allclose(fitted.mean(axis=0), 0.0, atol=1e-12)


def test_a_reduced_rank_ridge_recovers_a_few_common_states_better():
    """40 targets driven by 2 states among 60 inputs: the rank-2 projection of the ridge is
    closer to the true weights than the ridge; all directions give the ridge back."""
    from spreadcast.evaluation.walkforward import _RidgePath
    rng = np.random.default_rng(1)
    days, inputs, targets = 400, 60, 40
    truth = rng.normal(size=(inputs, 2)) @ rng.normal(size=(2, targets)) * 0.05
    x = rng.normal(size=(days, inputs))
    y = x @ truth + rng.normal(size=(days, targets))
    fits = component_lab.low_rank(_RidgePath(x, y, np.ones(days)), 0.1, [0, 2, targets])
    error = {r: np.linalg.norm(w - truth) for r, (w, _) in fits.items()}
    assert error[2] < 0.7 * error[0]
    assert np.linalg.matrix_rank(fits[2][0], tol=1e-8) == 2
    np.testing.assert_allclose(fits[targets][0], fits[0][0], atol=1e-10)
    np.testing.assert_allclose(fits[2][1], y.mean(axis=0) - x.mean(axis=0) @ fits[2][0])


def test_sharpe_weights_have_the_best_sharpe_of_any_non_negative_weights():
    """The non-negative least squares of ones on the daily scores is the max-Sharpe direction:
    no other non-negative weights give the daily covariances a higher mean / std."""
    rng = np.random.default_rng(0)
    days, targets = 300, 40
    lags = np.repeat([1, 2], targets // 2)
    steady = rng.normal(size=targets)                                # a ranking that holds every day
    labels = 0.2 * steady + rng.normal(size=(days, targets))
    components = {"transformer": labels + 3 * rng.normal(size=labels.shape),   # stronger, noisier
                  "ridge": rng.normal(size=labels.shape),
                  "prior": np.tile(steady, (days, 1)) + 0.1 * rng.normal(size=labels.shape),
                  "own": rng.normal(size=labels.shape)}
    fitted = component_lab.sharpe_weights(components, labels, lags, 0.3)
    assert max(max(w) for w in fitted.weights.values()) == pytest.approx(0.3)
    y = component_lab.blend.centred_ranks(labels)

    def sharpe(per_target):
        daily = (component_lab.blend.standardise(np.stack([components[n] for n in component_lab.blend.COMPONENTS]))
                 * per_target[:, None, :]).sum(axis=0) * y
        daily = daily.mean(axis=1)
        return daily.mean() / daily.std()

    best = sharpe(fitted.per_target(lags))
    for _ in range(300):
        other = component_lab.blend.Blend({lag: list(rng.uniform(0, 0.3, 4) * rng.integers(0, 2, 4))
                                           for lag in (1, 2)}, 0.3)
        if other.per_target(lags).any():
            assert sharpe(other.per_target(lags)) <= best + 1e-9


def _market(days, targets, signal, rng):
    """Labels with a steady ranking and, with `signal`, a part the transformer sees day by day."""
    steady = rng.normal(size=targets)
    moving = rng.normal(size=(days, targets))
    labels = 0.15 * steady + signal * moving + rng.normal(size=(days, targets))
    components = {"transformer": moving + 0.5 * rng.normal(size=labels.shape),
                  "ridge": rng.normal(size=labels.shape),
                  "prior": np.tile(steady, (days, 1)) + 0.05 * rng.normal(size=labels.shape),
                  "own": rng.normal(size=labels.shape)}
    return labels, components


def test_the_gate_keeps_the_prior_alone_unless_the_other_components_earn_their_weight():
    rng = np.random.default_rng(3)
    lags = np.repeat([1, 2], 20)
    sizes = [150, 150, 150, 150]
    labels, components = _market(600, 40, 0.0, rng)                 # the others are noise
    fitted, cv = component_lab.cross_validated_shrink(components, labels, lags, 0.3, sizes, component_lab.GATE,
                                                      True, "loo")
    assert cv["penalty"] == "inf" and cv["inf"] > cv["0.0"]
    assert all(w == [0.0, 0.0, 0.3, 0.0] for w in fitted.weights.values())   # the prior alone
    labels, components = _market(600, 40, 0.3, rng)                 # the transformer carries a signal
    for scheme in ("loo", "expanding", "last"):
        fitted, cv = component_lab.cross_validated_shrink(components, labels, lags, 0.3, sizes,
                                                          component_lab.SHRINKS, False, scheme)
        assert cv["penalty"] != "inf" and cv[cv["penalty"]] > cv["inf"] + 0.2
    unpenalised = component_lab.penalised_fit(components, labels, lags, 0.3, 0.0)
    plain = component_lab.blend.fit(components, labels, lags, 0.3)
    assert all(unpenalised.weights[lag] == pytest.approx(plain.weights[lag], abs=1e-12) for lag in (1, 2))
    shrunk = component_lab.penalised_fit(components, labels, lags, 0.3, 1.0)
    for lag in (1, 2):                                               # the penalty takes weight from the others
        assert shrunk.weights[lag][0] < unpenalised.weights[lag][0]


_att_spec = importlib.util.spec_from_file_location("attainable", ROOT / "bench" / "attainable.py")
attainable = importlib.util.module_from_spec(_att_spec)
_att_spec.loader.exec_module(attainable)


def test_the_weighted_rank_ic_is_the_screens_ic_under_equal_weights_and_follows_the_weights():
    """Equal weights give `prescreen.rank_ic` (missing cells included); weights on the later rows
    alone give the IC of those rows, so a relation that turned sign shows in the recent IC."""
    from spreadcast.features.prescreen import rank_ic
    rng = np.random.default_rng(3)
    features, labels = rng.normal(size=(200, 5)), rng.normal(size=(200, 3))
    features[rng.random(features.shape) < 0.1] = np.nan
    labels[:, 0] = np.where(np.arange(200) < 100, 1.0, -1.0) * features[:, 0] + 0.3 * rng.normal(size=200)
    equal = attainable.weighted_rank_ic(features, labels, np.ones(200))
    np.testing.assert_allclose(equal, rank_ic(features, labels), atol=1e-12)
    late = attainable.weighted_rank_ic(features, labels, (np.arange(200) >= 100).astype(float))
    np.testing.assert_allclose(late, rank_ic(features[100:], labels[100:]), atol=0.05)   # ranks over all rows
    assert late[0, 0] < -0.7 and abs(equal[0, 0]) < 0.2


def test_a_ridge_told_the_state_variables_reaches_much_of_the_ceiling(tiny_project, monkeypatch):
    """The tiny market is lead-lag: its leaders' weighted returns are its state, and a ridge on
    them reaches a good part of the ceiling (161 training days, 40 holdout days); on the same
    values in shuffled order (days mismatched) it does not."""
    row = attainable.attainable(tiny_project)
    assert len(row["state_variables"]) == 2 and all("weighted returns" in n for n in row["state_variables"])
    told = row["state, all training days"]
    assert told["share_of_ceiling"] > 0.3, row
    # lead-lag is the tiny market's one mechanism: its part is the whole ceiling; fit to the
    # oracle's expectation instead of the noisy labels, the same ridge does better
    assert list(row["ceiling_by_mechanism"]) == ["lead_lag"]
    assert row["ceiling_by_mechanism"]["lead_lag"] == pytest.approx(row["ceiling"], abs=1e-3)
    assert row["state fit to the expectation, all training days"]["sharpe"] > told["sharpe"] + 0.05, row
    assert np.isfinite(row["state fit to each day's labels over their spread, all training days"]["sharpe"])
    # the same ridge with recency weights, and the search: over every day alike, the leaders'
    # places are those of the project's own screen (its report's scores, a column by its best feature)
    for halflife in attainable.HALFLIVES:
        assert np.isfinite(row[f"state, all training days, recency half-life {halflife:g}"]["sharpe"])
    places = row["leader_places"]
    assert set(places) == {"source_columns", "every day alike", *(f"recency half-life {h:g}" for h in attainable.HALFLIVES)}
    best: dict[str, float] = {}
    for line in json.loads((tiny_project / "artifacts" / "features" / "report.json").read_text()):
        if line["score"] > 0:
            family = line["feature"].split("__")[0]
            best[family] = max(best.get(family, 0.0), line["score"])
    order = sorted(best, key=lambda f: (-round(best[f], 12), f))
    from spreadcast import config
    from spreadcast.data import synthetic
    cfg = config.load("synthetic", str(tiny_project / "params.yaml"))
    market = synthetic.generate(cfg)
    assert places["source_columns"] == len(order)
    assert places["every day alike"] == [order.index(leader) + 1 for leader in market.leaders], (places, order[:5])
    assert all(1 <= p <= len(order) for k, v in places.items() if k != "source_columns" for p in v)
    names, values, dates = attainable.state_variables(cfg, market)
    shuffled = values[np.random.default_rng(0).permutation(len(values))]
    monkeypatch.setattr(attainable, "state_variables", lambda *a: (names, shuffled, dates))
    control = attainable.attainable(tiny_project)["state, all training days"]
    assert control["sharpe"] < told["sharpe"] - 0.3, (control, told)


_chart_spec = importlib.util.spec_from_file_location("quality_chart", ROOT / "bench" / "quality_chart.py")
quality_chart = importlib.util.module_from_spec(_chart_spec)
_chart_spec.loader.exec_module(quality_chart)


def test_the_quality_chart_draws_every_market_and_refuses_what_is_not_a_quality_table(tmp_path, monkeypatch):
    import xml.etree.ElementTree as ET
    table = {"reseed": 0, "markets": {"default": {"model": 0.8, "ridge": 0.4, "const_rank": 0.1, "ceiling": 1.0},
                                      "null": {"model": -0.05, "ridge": 0.02, "const_rank": -0.1}}}
    other = {"reseed": 100, "markets": {"default": {"model": 0.6, "ridge": 0.3, "const_rank": -0.1, "ceiling": 1.1}}}
    first, second = tmp_path / "quality.json", tmp_path / "quality_reseed100.json"
    first.write_text(json.dumps(table))
    second.write_text(json.dumps(other))
    out = tmp_path / "chart.svg"
    monkeypatch.setattr("sys.argv", ["quality_chart", "--results", f"{first},{second}", "--out", str(out)])
    quality_chart.main()
    svg = ET.parse(out).getroot()                                   # well-formed
    ns = "{http://www.w3.org/2000/svg}"
    titles = [t.text for t in svg.iter(f"{ns}title")]
    # a bar per series and market of each draw, a ceiling where the market has one
    assert sum("served model" in t for t in titles) == 3 and sum("ceiling" in t for t in titles) == 2
    assert "default served model: +0.800" in titles and "null constant ranking: -0.100" in titles
    assert any(t.text == "not on this draw" for t in svg.iter(f"{ns}text"))   # null is not in the second draw
    assert not list(tmp_path.glob("*.tmp"))
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"rows": []}))
    monkeypatch.setattr("sys.argv", ["quality_chart", "--results", str(bad), "--out", str(out)])
    with pytest.raises(SystemExit, match="other.json has no 'markets' table"):
        quality_chart.main()
