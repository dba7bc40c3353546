"""The one forecast path: a served window gives what the batch path gives, on as many threads as
the heads' size pays for, and leaves torch's thread count as it found it."""
import numpy as np
import pytest
import torch

from spreadcast.model.net import ModelConfig, SpreadTransformer
from spreadcast.serve import predictor
from spreadcast.serve.predictor import Forecaster, Head


def heads(d_model=16, history=8):
    torch.manual_seed(0)
    out = []
    for lag, feats, targets in ((1, ["a", "b"], ["t0", "t1"]), (2, ["b", "c"], ["t2"])):
        cfg = ModelConfig(n_features=len(feats), n_targets=len(targets), history=history, d_model=d_model,
                          n_heads=2, n_layers=1, dropout=0.0)
        out.append(Head(lag=lag, model=SpreadTransformer(cfg).eval(), features=feats, targets=targets))
    return out


def test_served_window_equals_the_batch_path_and_restores_threads():
    forecaster = Forecaster(heads(), ["c", "a", "b"], ["t0", "t1", "t2"])
    assert forecaster.threads == 1                    # tiny heads: one thread
    rng = np.random.default_rng(0)
    x, m = rng.normal(size=(8, 3)).astype(np.float32), np.zeros((8, 3), dtype=np.float32)
    batch = forecaster(torch.from_numpy(x)[None], torch.from_numpy(m)[None])[0]
    before = torch.get_num_threads()
    served = forecaster.forecast_window(x, m)
    assert torch.get_num_threads() == before
    np.testing.assert_allclose(served, batch, rtol=1e-6, atol=1e-7)


def test_thread_count_is_restored_when_the_block_raises(monkeypatch):
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with predictor._threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_large_heads_keep_every_thread(monkeypatch):
    monkeypatch.setattr(predictor, "ONE_THREAD_BELOW", 10)
    assert Forecaster(heads(), ["a", "b", "c"], ["t0", "t1", "t2"]).threads is None


@pytest.mark.parametrize("streaming", [False, True])
def test_stacked_heads_serve_what_separate_heads_serve(monkeypatch, streaming):
    """Heads of one shape run as one module, on both serving paths (whole windows and day terms),
    frozen; the forecasts are those of the heads run one by one."""
    rng = np.random.default_rng(1)
    days = rng.normal(size=(12, 3)).astype(np.float32)
    miss = (rng.random((12, 3)) < 0.1).astype(np.float32)
    served = {}
    for stacked in (True, False):
        if not stacked:
            monkeypatch.setattr(predictor, "stackable", lambda models: False)
        forecaster = Forecaster(heads(), ["c", "a", "b"], ["t0", "t1", "t2"])
        assert (forecaster.stacked is not None) == stacked
        forecaster.streaming = streaming
        assert forecaster.freeze(days[:8], miss[:8])                      # traced and checked
        out = []
        for end in range(9, 13):                                          # slide the window a day at a time
            forecaster.push(days[end - 1], miss[end - 1])
            out.append(forecaster.forecast_window(days[end - 8:end], miss[end - 8:end]))
        served[stacked] = np.array(out)
    np.testing.assert_allclose(served[True], served[False], rtol=1e-5, atol=1e-6)
