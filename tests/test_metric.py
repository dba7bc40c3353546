import numpy as np
import pytest

from spreadcast.evaluation import metric
from spreadcast.evaluation.metric import MetricError


def random_inputs(rng, days=40, targets=25, missing=0.2, ties=True):
    y = rng.standard_normal((days, targets))
    p = rng.standard_normal((days, targets))
    if ties:
        y, p = np.round(y, 1), np.round(p, 1)
    y[rng.random(y.shape) < missing] = np.nan
    return y, p


@pytest.mark.parametrize("seed", range(8))
def test_vectorised_matches_reference(seed):
    y, p = random_inputs(np.random.default_rng(seed))
    assert metric.score(y, p) == pytest.approx(metric.score_reference(y, p), abs=1e-9)


def test_hand_computed_day():
    y = np.array([[1.0, 2.0, 3.0, np.nan], [3.0, 2.0, 1.0, 0.0]])
    p = np.array([[10.0, 30.0, 20.0, 99.0], [1.0, 1.0, 2.0, 3.0]])
    daily = metric.daily_rank_corr(y, p)
    # day 0: ranks p = (1, 3, 2) vs y = (1, 2, 3): corr = 0.5
    assert daily[0] == pytest.approx(0.5)
    # day 1: ranks p = (1.5, 1.5, 3, 4) vs y = (4, 3, 2, 1): corr = -0.9486833
    assert daily[1] == pytest.approx(-0.9486832980505138)
    assert metric.score(y, p) == pytest.approx(daily.mean() / daily.std())


def test_prediction_scale_does_not_matter_but_order_does():
    y, p = random_inputs(np.random.default_rng(1), ties=False)
    assert metric.score(y, 5 * p + 3) == pytest.approx(metric.score(y, p))
    assert metric.score(y, -p) == pytest.approx(-metric.score(y, p))


def test_zero_spread_is_an_error():
    y, p = random_inputs(np.random.default_rng(2))
    p[3] = 1.0
    with pytest.raises(MetricError, match="date row 3: zero spread"):
        metric.score(y, p)
    with pytest.raises(MetricError, match="date row 3: zero spread"):
        metric.score_reference(y, p)


def test_date_without_labels_is_an_error_unless_lenient():
    y, p = random_inputs(np.random.default_rng(3))
    y[5] = np.nan
    with pytest.raises(MetricError, match="date row 5: no non-null target values"):
        metric.score(y, p)
    daily = metric.daily_rank_corr(y, p, strict=False)
    assert np.isnan(daily[5]) and np.isfinite(np.delete(daily, 5)).all()
    assert metric.summary(y, p)["days"] == y.shape[0] - 1


def test_rankdata_matches_scipy_with_ties_and_missing():
    from scipy.stats import rankdata as scipy_rankdata

    rng = np.random.default_rng(9)
    x = np.round(rng.standard_normal((30, 17)), 1)
    x[rng.random(x.shape) < 0.25] = np.nan
    for axis in (0, 1):
        expected = scipy_rankdata(x, method="average", axis=axis, nan_policy="omit")
        np.testing.assert_allclose(metric.rankdata(x, axis=axis), expected, equal_nan=True)


def test_ranking_quality_perfect_and_reversed():
    from spreadcast.evaluation.report import ranking_quality

    y = np.tile(np.arange(20.0), (3, 1))
    perfect = ranking_quality(y, y)
    assert perfect["top_k_precision"] == 1.0 and perfect["q5_q1_spread"] == pytest.approx(16.0)
    reversed_ = ranking_quality(y, -y)
    assert reversed_["top_k_precision"] == 0.0 and reversed_["q5_q1_spread"] == pytest.approx(-16.0)


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_standardised_forecasts_rank_across_lags_better(seed):
    """The metric ranks all lags together and longer lags move more. Even the oracle's exact
    expectations rank better when each target's forecast is put in units of its training-fold
    label RMS, the scale the heads are combined on (serve/predictor.py)."""
    from spreadcast.config import SyntheticConfig
    from spreadcast.data import synthetic

    cfg = SyntheticConfig(seed=seed, n_train_days=1200, n_test_days=20, n_scored_days=20, n_us=20, n_fx=8,
                          n_jpx=2, targets_per_lag=25)
    market = synthetic.generate(cfg)
    names = [c for c in market.ceiling.columns if c != "date_id"]
    labels = market.train_labels.select(names).to_numpy()[50:1150]
    ceiling = market.ceiling.select(names).to_numpy()[50:1150]
    scale = np.sqrt(np.nanmean(labels[:550] ** 2, axis=0))            # fit on the first half only
    raw = metric.summary(labels[550:], ceiling[550:])["sharpe"]
    standardised = metric.summary(labels[550:], ceiling[550:] / scale)["sharpe"]
    assert standardised > raw + 0.005
