"""Lag heads of one shape served in one pass forecast what each head forecasts alone."""
import pytest
import torch

from spreadcast.model import stacked as stacked_module
from spreadcast.model.net import ModelConfig, SpreadTransformer
from spreadcast.model.stacked import StackedHeads, stackable


def models(targets=(5, 3, 5), n_features=6, history=8, d_model=16):
    torch.manual_seed(0)
    out = []
    for n_targets in targets:
        cfg = ModelConfig(n_features=n_features, n_targets=n_targets, history=history, d_model=d_model, n_heads=2,
                          n_layers=2, dropout=0.0, skip_decays=(0.0, 0.9))
        model = SpreadTransformer(cfg)
        with torch.no_grad():
            for p in model.parameters():        # trained-like weights: nothing left at its zero start
                p.normal_(0.0, 0.3)
        out.append(model.eval())
    return out


@pytest.mark.parametrize("chunk", [64, 3])        # 3: causal attention in chunks of 3 queries
@torch.no_grad()
def test_stacked_heads_forecast_what_each_head_forecasts(monkeypatch, chunk):
    monkeypatch.setattr(stacked_module, "ATTENTION_CHUNK", chunk)
    heads = models()
    stacked = StackedHeads(heads)
    assert len(stacked.chunks) == (1 if chunk == 64 else 3)
    x, m = torch.randn(3, 4, 8, 6), (torch.rand(3, 4, 8, 6) < 0.2).float()
    whole = stacked(x, m)                                               # (H, B, T)
    # the serving path: each day's terms computed alone, then the window from them
    days = [stacked.day_terms(x[:, :, d], m[:, :, d]) for d in range(8)]
    terms = stacked.from_day_terms(torch.stack([p for p, _ in days], dim=2), torch.stack([l for _, l in days], dim=2))
    for h, model in enumerate(heads):
        want = model(x[h], m[h])[0]
        torch.testing.assert_close(whole[h, :, :want.shape[1]], want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(terms[h, :, :want.shape[1]], want, rtol=1e-5, atol=1e-5)
    assert whole[1, :, 3:].abs().max() == 0          # a head with fewer targets: padded with zeros


def test_only_heads_of_one_shape_in_eval_mode_are_stacked():
    assert stackable(models())
    assert not stackable(models(targets=(5,)))                          # one head: nothing to stack
    assert not stackable(models()[:1] + models(n_features=7)[:1])
    assert not stackable([m.train() for m in models()])
    with pytest.raises(AssertionError, match="one shape"):
        StackedHeads(models()[:1] + models(d_model=8)[:1])
