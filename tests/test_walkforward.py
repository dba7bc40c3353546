"""Walk-forward folds and the ridge they choose."""
import numpy as np
import pytest

from spreadcast.config import PrescreenConfig
from spreadcast.errors import SplitError
from spreadcast.features.prescreen import prescreen
from spreadcast.evaluation.baseline import fit_ridge as plain_ridge
from spreadcast.evaluation.walkforward import (fit_ridge, fold_weights, folds, leading_columns, recency_weights,
                                               select_ridge, weighted_mean)


def test_folds_expand_forward_with_an_embargo():
    rows = np.arange(3, 403)
    out = folds(rows, n_folds=3, embargo=5)
    assert len(out) == 3
    tests = np.concatenate([t for _, t in out])
    np.testing.assert_array_equal(tests, rows[-300:])            # the last 3 blocks of 100, in order
    for fit, test in out:
        assert fit.max() == test[0] - 6                         # the embargo: 5 days between
        assert fit.min() == rows[0] and fit.size >= 94
    with pytest.raises(SplitError, match="cannot make 3 walk-forward folds"):
        folds(np.arange(30), n_folds=3, embargo=5)


def test_the_folds_weigh_alike_or_by_their_fitting_days():
    """`walkforward.weigh`: each candidate's mean over the folds weighs every fold alike, or each by
    the rows its fit had; a fold that could not be scored (NaN) leaves its weight out."""
    splits = folds(np.arange(400), n_folds=3, embargo=5)
    np.testing.assert_allclose(fold_weights(splits, "equal"), [1 / 3] * 3)
    sizes = np.array([fit.size for fit, _ in splits], dtype=float)
    np.testing.assert_allclose(fold_weights(splits, "fit_days"), sizes / sizes.sum())
    assert sizes[0] < sizes[1] < sizes[2]
    with pytest.raises(ValueError, match="weigh must be one of equal, fit_days"):
        fold_weights(splits, "latest")
    assert weighted_mean([1.0, np.nan, 4.0], np.array([0.25, 0.25, 0.5])) == pytest.approx(3.0)
    assert np.isnan(weighted_mean([np.nan, np.nan], np.array([0.5, 0.5])))
    # each candidate's mean is its fold scores' weighted mean
    x, y = _market(flip_at=10_000)
    for weigh in ("equal", "fit_days"):
        choice = select_ridge(x, y, y, np.arange(900), [0.1, 10.0], [0.0], n_folds=3, embargo=5, weigh=weigh)
        w = fold_weights(folds(np.arange(900), 3, 5), weigh)
        for c in choice.scores:
            assert c["mean_sharpe"] == pytest.approx(float(np.dot(w, c["fold_sharpe"])), abs=2e-4)


def test_equal_weights_match_the_plain_ridge():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 6)), rng.normal(size=(200, 3))
    y[5, 1] = np.nan
    rows = np.arange(20, 200)
    w, b = fit_ridge(x, y, 3.0, rows, halflife=0.0)
    w0, b0 = plain_ridge(x[rows], y[rows], 3.0)
    np.testing.assert_allclose(w, w0, atol=1e-10)
    np.testing.assert_allclose(b, b0, atol=1e-10)
    weights = recency_weights(rows, 50.0)
    assert weights.mean() == pytest.approx(1.0) and weights[-1] == pytest.approx(2 * weights[-51])


def _market(flip_at: int, days=900, n_features=8, n_targets=40, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(days, n_features))
    beta = rng.normal(size=(n_features, n_targets))
    sign = np.where(np.arange(days) < flip_at, 1.0, -1.0)[:, None]
    y = 0.3 * sign * (x @ beta) + rng.normal(size=(days, n_targets))
    return x, y


def test_recency_is_chosen_where_the_relation_turned_and_not_where_it_held():
    x, y = _market(flip_at=450)
    turned = select_ridge(x, y, y, np.arange(900), [1.0], [0.0, 100.0], n_folds=3, embargo=5)
    assert turned.halflife == 100.0
    x, y = _market(flip_at=10_000)
    held = select_ridge(x, y, y, np.arange(900), [1.0], [0.0, 100.0], n_folds=3, embargo=5)
    assert held.halflife == 0.0
    assert {c["halflife"] for c in held.scores} == {0.0, 100.0} and all(len(c["fold_sharpe"]) == 3 for c in held.scores)


def test_the_penalty_follows_the_signal():
    """Many inputs and few rows: pure noise wants the largest penalty, a strong signal a small one."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 60))
    noise = rng.normal(size=(400, 30))
    alphas = [0.01, 100.0]
    assert select_ridge(x, noise, noise, np.arange(400), alphas, [0.0], 3, 5).alpha == 100.0
    signal = x @ rng.normal(size=(60, 30)) + 0.5 * noise
    assert select_ridge(x, signal, signal, np.arange(400), alphas, [0.0], 3, 5).alpha == 0.01


def test_a_fold_is_judged_on_inputs_screened_without_its_days():
    """Pure noise, 800 candidate inputs, 20 kept by their IC. Screened on every training day, the
    folds see inputs chosen on their own labels and score well; screened on each fold's fitting
    days only, they score what the inputs are worth: nothing."""
    rng = np.random.default_rng(5)
    days, rows = 600, np.arange(600)
    x, y = rng.normal(size=(days, 800)), rng.normal(size=(days, 30))
    cfg = PrescreenConfig(top_k=20, group_by_column=False)
    names = [f"f{j}" for j in range(x.shape[1])]

    def screen(on: np.ndarray) -> np.ndarray:
        kept, _ = prescreen(x[on], names, y[on], cfg)
        return np.array([names.index(n) for n in kept])

    everywhere = screen(rows)
    biased = select_ridge(x[:, everywhere], y, y, rows, [0.01], [0.0], n_folds=3, embargo=5)
    per_fold = [screen(fit) for fit, _ in folds(rows, 3, 5)]
    clean = select_ridge(x, y, y, rows, [0.01], [0.0], n_folds=3, embargo=5, fold_columns=per_fold)
    assert biased.scores[0]["mean_sharpe"] > 0.2
    assert abs(clean.scores[0]["mean_sharpe"]) < 0.15


def test_leading_columns_keep_whole_source_columns_in_the_screens_order():
    names = ["B__ret1", "B__ret5", "A__ret1", "C__z60", "A__ret5", "D__vol20"]
    order = np.array([3, 0, 1, 2, 4, 5])                 # C first, then B, then A, then D
    assert leading_columns(order, names, 1).tolist() == [3]
    assert leading_columns(order, names, 2).tolist() == [3, 0, 1]
    assert leading_columns(order, names, 3).tolist() == [3, 0, 1, 2, 4]
    assert leading_columns(order, names, 0).tolist() == order.tolist()
    assert leading_columns(order, names, 10).tolist() == order.tolist()


def test_few_informative_columns_among_many_choose_a_short_ridge():
    """Two source columns carry the signal and 60 are noise: on the folds, the ridge on the first
    few columns of the screen's order beats the ridge on all of them, and the count chosen that
    way scores better on later days too."""
    rng = np.random.default_rng(11)
    days, targets = 900, 40
    signal = rng.normal(size=(days, 2))
    noise = rng.normal(size=(days, 60 * 3))
    x = np.concatenate([signal[:, :1], signal[:, 1:], noise], axis=1)
    load = rng.normal(size=(2, targets))
    y = 0.15 * signal @ load + rng.normal(size=(days, targets))    # row t: the label that row t of x forecasts
    names = ["S1__ret5", "S2__ret5"] + [f"N{k // 3}__f{k % 3}" for k in range(noise.shape[1])]
    order = np.arange(x.shape[1])                         # the screen's order: the signal first
    train, later = np.arange(600), np.arange(620, days)
    means = {}
    for count in (2, 8, 0):
        cols = leading_columns(order, names, count)
        means[count] = select_ridge(x[:, cols], y, y, train, [0.01, 1.0], [0.0], n_folds=3, embargo=5).mean_sharpe
    assert max(means, key=means.get) == 2 and means[2] > means[0] + 0.1, means

    def later_sharpe(count):
        cols = leading_columns(order, names, count)
        w, b = fit_ridge(x[:, cols], y, 0.01, train, 0.0)
        from spreadcast.evaluation import metric
        return metric.summary(y[later], x[later][:, cols] @ w + b)["sharpe"]
    assert later_sharpe(2) > later_sharpe(0) + 0.1


def test_fewer_columns_than_all_only_beyond_one_standard_error():
    from spreadcast.evaluation.walkforward import RidgeChoice, choose_columns

    def option(mean):
        return RidgeChoice(1.0, 0.0, [{"alpha": 1.0, "halflife": 0.0, "fold_sharpe": [mean], "mean_sharpe": mean}])

    splits = [(np.arange(10), np.arange(100 * k, 100 * k + 100)) for k in range(1, 5)]   # 400 days: margin 0.05
    assert choose_columns({4: option(0.30), 0: option(0.20)}, [4, 0], splits) == (4, 0.05)
    assert choose_columns({4: option(0.24), 0: option(0.20)}, [4, 0], splits)[0] == 0     # within the margin
    assert choose_columns({4: option(0.10), 0: option(0.20)}, [4, 0], splits)[0] == 0
    assert choose_columns({4: option(0.24), 8: option(0.21)}, [4, 8], splits)[0] == 4     # no baseline among them
    # a named candidate (the blend's level features alone) on the same terms as the counts
    assert choose_columns({4: option(0.24), "levels": option(0.30), 0: option(0.20)}, [4, "levels", 0],
                          splits)[0] == "levels"
    assert choose_columns({4: option(0.24), "levels": option(0.24), 0: option(0.20)}, [4, "levels", 0],
                          splits)[0] == 0                                              # within the margin
    assert choose_columns({4: option(0.30), "levels": option(0.30), 0: option(0.20)}, [4, "levels", 0],
                          splits)[0] == 4                                              # a tie: the count


def _drifting(days=600, n_features=6, n_targets=40, seed=4):
    """Targets with persistent means of their own and no relation to the inputs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(days, n_features))
    y = 0.3 * rng.normal(size=n_targets) + rng.normal(size=(days, n_targets))
    return x, y


@pytest.mark.parametrize("halflife", [0.0, 50.0])
def test_a_ridge_without_intercept_forecasts_its_inputs_deviations_alone(halflife):
    x, y = _drifting()
    rows = np.arange(100, 500)
    w, b = fit_ridge(x, y, 1.0, rows, halflife)
    w0, b0 = fit_ridge(x, y, 1.0, rows, halflife, intercept=False)
    np.testing.assert_allclose(w0, w, atol=1e-12)                     # the same coefficients
    weights = recency_weights(rows, halflife)
    centred = x[rows] @ w0 + b0
    np.testing.assert_allclose(weights @ centred / weights.sum(), 0.0, atol=1e-12)   # no constant left
    mean_label = weights @ y[rows] / weights.sum()
    np.testing.assert_allclose(b - b0, mean_label, atol=1e-10)       # what it drops: each target's mean label


def test_the_folds_score_the_ridge_as_it_forecasts():
    """Persistent target means and uninformative inputs: with its intercept the ridge ranks the
    targets by their means and the folds score it high; without, nothing is left to score."""
    x, y = _drifting()
    rows = np.arange(600)
    with_constant = select_ridge(x, y, y, rows, [1.0], [0.0], n_folds=3, embargo=5)
    without = select_ridge(x, y, y, rows, [1.0], [0.0], n_folds=3, embargo=5, intercept=False)
    assert with_constant.mean_sharpe > 1.0
    assert abs(without.mean_sharpe) < 0.3
