"""The model's linear path: decayed averages, its closed-form start, saliency and the pruning
count chosen on validation days."""
import numpy as np
import pytest
import torch

from spreadcast.config import PruneConfig
from spreadcast.features.windows import HeadData, Windows
from spreadcast.model.net import DecayPool, ModelConfig, SpreadTransformer
from spreadcast.training import linear, loop
from spreadcast.training.prune import count_by_validation, select

HISTORY = 8


def test_decayed_averages_have_unit_norm_and_a_zero_decay_keeps_the_last_day():
    pool = DecayPool(decays=(0.0, 0.5))
    w = pool.kernels(HISTORY).detach()
    torch.testing.assert_close(w.norm(dim=1), torch.ones(2))
    assert w[1, -2] / w[1, -1] == pytest.approx(0.5, rel=1e-4)       # one day older: half the weight
    x = torch.randn(3, HISTORY, 5)
    out = pool(x).detach().view(3, 2, 5)
    torch.testing.assert_close(out[:, 0], x[:, -1], atol=1e-3, rtol=1e-3)


def planted(seed=0, days=400, features=6, targets=5, decay=0.8, noise=0.05):
    """Labels that are an exact linear map of decayed averages of features 0 and 3 only."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((days, features)).astype(np.float32)
    k = decay ** np.arange(HISTORY)[::-1]
    k /= np.linalg.norm(k)
    ewma = np.stack([np.convolve(x[:, j], k[::-1])[:days] for j in range(features)], axis=1)
    beta = np.zeros((features, targets))
    beta[0], beta[3] = rng.standard_normal(targets), rng.standard_normal(targets)
    y = (ewma @ beta + noise * rng.standard_normal((days, targets))).astype(np.float32)
    windows = Windows(torch.from_numpy(x), torch.zeros(days, features), torch.from_numpy(y), HISTORY)
    rows = np.arange(HISTORY - 1, days)
    return HeadData(windows=windows, train_rows=rows[:300], val_rows=rows[300:],
                         target_scale=torch.ones(targets), raw_labels=y.astype(np.float64))


def model_for(data, decays=(0.0, 0.8)):
    torch.manual_seed(0)
    x, _, y = data.windows.batch(data.train_rows[:1])
    cfg = ModelConfig(n_features=x.shape[-1], n_targets=y.shape[-1], history=HISTORY, d_model=16,
                      n_heads=2, n_layers=1, skip_decays=decays)
    return SpreadTransformer(cfg)


def test_ridge_start_recovers_a_planted_linear_map_and_saliency_finds_its_inputs():
    data = planted()
    model = model_for(data)
    with torch.no_grad():
        x, _, y = data.windows.batch(data.val_rows)
        before = model.linear(x)[:, :y.shape[1]]
    assert before.abs().max() == 0                                      # the path starts at zero
    linear.ridge_start(model, data.windows, data.train_rows, alpha=1e-4)
    with torch.no_grad():
        forecast, score = model.linear(x).chunk(2, dim=-1)
    # validation rows were not fitted on; the gates (0.88 at the start) are absorbed in the weights
    corr = np.corrcoef(forecast.numpy().ravel(), y.numpy().ravel())[0, 1]
    assert corr > 0.99
    torch.testing.assert_close(forecast, score)
    ranked = torch.argsort(linear.saliency(model), descending=True)
    assert set(ranked[:2].tolist()) == {0, 3}


def test_saliency_is_zero_for_a_closed_gate_or_unused_input():
    data = planted()
    model = model_for(data)
    linear.ridge_start(model, data.windows, data.train_rows, alpha=1e-4)
    with torch.no_grad():
        model.gate.logit[0] = -40.0                                     # gate of feature 0 shut
        model.skip.weight[:, [3, 6 + 3]] = 0.0                           # feature 3 unused, both averages
    s = linear.saliency(model)
    assert s[0] < 1e-12 and s[3] == 0 and (s[[1, 2, 4, 5]] > 0).all()


def test_validation_picks_the_count_that_scores_best_and_the_smaller_on_a_tie():
    scores = np.array([0.9, 0.1, 0.8, 0.7, 0.2])
    names = list("abcde")
    seen = []

    def val_sharpe(indices):
        seen.append(list(indices))
        return {1: 0.2, 2: 0.5, 3: 0.5, 5: 0.1}[len(indices)]
    count, tried = count_by_validation(scores, names, [3, 2, 9, 1], val_sharpe)
    assert count == 2 and tried == {1: 0.2, 2: 0.5, 3: 0.5, 5: 0.1}   # 9 is capped at the 5 features
    assert seen[1] == [0, 2]                                            # the top-2 by score
    kept, _ = select(scores, names, PruneConfig(policy="validate", min_keep=1), count)
    assert kept == ["a", "c"]
    with pytest.raises(ValueError, match="needs the count"):
        select(scores, names, PruneConfig(policy="validate"))


def test_validation_scorer_prefers_the_planted_inputs():
    data = planted(noise=1.0)
    model = model_for(data)
    score = linear.validation_scorer(model, data, alpha=1.0)
    assert score([0, 3]) > score([1, 2]) + 0.5


def test_linear_path_weights_get_their_own_learning_rate():
    data = planted()
    model = model_for(data)
    groups = loop._param_groups(model, weight_decay=0.01, gate_lr_mult=100.0, linear_lr_mult=7.0)
    skip = [g for g in groups if any(p is model.skip.weight for p in g["params"])]
    assert len(skip) == 1 and skip[0]["lr_mult"] == 7.0 and skip[0]["weight_decay"] == 0.01
    assert skip[0]["params"] == [model.skip.weight]
    fast = [g for g in groups if any(p is model.pool.logit for p in g["params"])][0]
    assert fast["lr_mult"] == 100.0 and any(p is model.gate.logit for p in fast["params"])
