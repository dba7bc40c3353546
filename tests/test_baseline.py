"""The baselines every evaluation shows beside the model."""
import numpy as np

from spreadcast.evaluation import metric
from spreadcast.evaluation.baseline import const_rank, fit_ridge, predict_ridge


def test_const_rank_is_each_targets_mean_daily_rank():
    labels = np.array([[1.0, 2.0, 3.0],
                       [3.0, 2.0, 1.0],
                       [0.0, np.nan, 5.0],
                       [np.nan, np.nan, np.nan]])
    # day ranks scaled to [0, 1]: (0, .5, 1), (1, .5, 0), (0, -, 1); target 1 seen on two days
    np.testing.assert_allclose(const_rank(labels), [1 / 3, 0.5, 2 / 3])
    assert const_rank(np.full((3, 2), np.nan)).tolist() == [0.5, 0.5]


def test_const_rank_finds_persistent_means_and_nothing_in_noise():
    rng = np.random.default_rng(0)
    means = np.linspace(-0.3, 0.3, 40)
    train, test = (means + rng.standard_normal((n, 40)) for n in (400, 300))
    prior = const_rank(train)
    assert metric.summary(test, np.tile(prior, (300, 1)))["sharpe"] > 1.0
    noise_prior = const_rank(rng.standard_normal((400, 40)))
    assert abs(metric.summary(test - means, np.tile(noise_prior, (300, 1)))["sharpe"]) < 0.25


def test_ridge_recovers_a_linear_signal():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 6))
    w = rng.standard_normal((6, 3))
    y = x @ w + 0.1 * rng.standard_normal((500, 3))
    weights, intercept = fit_ridge(x, y, alpha=1e-4)
    np.testing.assert_allclose(weights, w, atol=0.05)
    np.testing.assert_allclose(predict_ridge(weights, intercept, x), x @ weights + intercept)
