"""The own-series component: one pooled rule per lag, read from each target's own inputs."""
import numpy as np
import pytest

from spreadcast.data.targets import Target
from spreadcast.config import FeaturesConfig
from spreadcast.evaluation import metric, own
from spreadcast.features.engineer import own_features, own_slots


def panel(days=400, targets=30, slots=3, rule=(-0.4, 0.0, 0.2), seed=0):
    """Own inputs z (days x targets x slots) and labels driven by one rule shared by every target
    of a lag (lag 2's rule is lag 1's reversed)."""
    rng = np.random.default_rng(seed)
    lags = np.repeat([1, 2], targets // 2)
    z = rng.normal(size=(days, targets, slots))
    coef = np.where((lags == 1)[:, None], np.asarray(rule), -np.asarray(rule))
    labels = np.einsum("bts,ts->bt", z, coef) + rng.normal(size=(days, targets))
    labels[rng.random(labels.shape) < 0.05] = np.nan
    return z, labels, lags, coef


def test_pooled_fit_recovers_each_lags_rule_and_forecasts_new_days():
    z, labels, lags, coef = panel()
    fitted = own.fit(z[:300], labels[:300], lags, alpha=0.01)
    for lag in (1, 2):
        cols = lags == lag
        assert (fitted[cols] == fitted[cols][0]).all()                 # one rule per lag
        sign = np.sign(fitted[cols][0][[0, 2]])
        np.testing.assert_array_equal(sign, np.sign(coef[cols][0][[0, 2]]))
        assert abs(fitted[cols][0][1]) < 0.25 * abs(fitted[cols][0][0])   # the empty slot stays small
    held = metric.summary(labels[300:], own.predict(z[300:], fitted))["sharpe"]
    assert held > 1.0


def test_inputs_read_each_targets_columns_and_zero_where_a_slot_has_none():
    x = np.arange(12.0).reshape(2, 6)
    cols = own.columns([["a", None], ["c", "b"]], ["a", "b", "c", "d", "e", "f"])
    np.testing.assert_array_equal(cols, [[0, -1], [2, 1]])
    z = own.inputs(x, cols)
    np.testing.assert_array_equal(z[1], [[6.0, 0.0], [8.0, 7.0]])
    with pytest.raises(KeyError, match="'zz'"):
        own.columns([["zz", None]], ["a"])


def test_no_own_inputs_give_a_zero_forecast():
    z, labels, lags, _ = panel()
    empty = z[:, :, :0]
    assert not own.predict(empty, own.fit(empty, labels, lags, 1.0)).any()


def test_penalty_is_chosen_on_folds_before_the_days_judged():
    """Only the rows given choose: labels after them can be anything."""
    z, labels, lags, _ = panel(days=500)
    rows = np.arange(300)
    choice = own.select(z, labels, lags, rows, [0.01, 100.0], n_folds=3, embargo=5)
    scrambled = labels.copy()
    scrambled[300:] = np.random.default_rng(5).normal(size=scrambled[300:].shape)
    again = own.select(z, scrambled, lags, rows, [0.01, 100.0], n_folds=3, embargo=5)
    assert choice == again
    assert all(len(c["fold_sharpe"]) == 3 for c in choice.scores)


def test_own_features_name_a_pairs_spread_and_a_single_prices_series():
    cfg = FeaturesConfig(return_horizons=[1, 5], deviation_halflives=[5.0])
    assert own_slots(cfg) == ["chg1", "chg5", "z", "dev5", "revealed"]
    pair = own_features(Target("target_1", 2, "A", "B"), cfg)
    assert pair == ["spread[A|B]__chg1", "spread[A|B]__chg5", "spread[A|B]__z20", "spread[A|B]__dev5",
                    "target_1__revealed"]
    single = own_features(Target("target_0", 1, "A", None), cfg)
    assert single == ["A__ret1", "A__ret5", "A__z60", None, "target_0__revealed"]


def test_a_centred_fit_forecasts_each_target_against_its_own_usual():
    """Inputs with a persistent level per target: the centred forecast has zero mean over the
    fitting rows for every target and differs from the uncentred one by that constant alone."""
    z, labels, lags, _ = panel()
    z = z + np.random.default_rng(1).normal(size=(1, z.shape[1], z.shape[2]))   # each target's own level
    coef = own.fit(z[:300], labels[:300], lags, alpha=0.01)
    offset = own.offset(z[:300], coef)
    np.testing.assert_allclose(own.predict(z[:300], coef, offset).mean(axis=0), 0.0, atol=1e-12)
    held, plain = own.predict(z[300:], coef, offset), own.predict(z[300:], coef)
    np.testing.assert_allclose(plain - held, np.broadcast_to(offset, held.shape), atol=1e-12)
    assert not own.offset(z[:300], coef, centre=False).any()
    # the levels carry nothing about the labels: the folds score the centred forecast higher
    scores = [max(c["mean_sharpe"] for c in own.select(z, labels, lags, np.arange(400), [0.01], n_folds=3,
                                                          embargo=5, centre=centre).scores)
              for centre in (False, True)]
    assert scores[1] > scores[0] + 0.2
