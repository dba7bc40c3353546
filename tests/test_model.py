import numpy as np
import pytest
import torch

from spreadcast.config import PruneConfig
from spreadcast.model import checkpoint, losses
from spreadcast.model.checkpoint import CheckpointError
from spreadcast.model.net import ModelConfig, SpreadTransformer
from spreadcast.training.loop import lr_at
from spreadcast.training.prune import select


def tiny_model(n_features=6, n_targets=4):
    torch.manual_seed(0)
    return SpreadTransformer(ModelConfig(n_features=n_features, n_targets=n_targets, history=5, d_model=16,
                                         n_heads=2, n_layers=1))


def test_forward_shapes_and_gate_range():
    model = tiny_model()
    x, m = torch.randn(3, 5, 6), torch.zeros(3, 5, 6)
    forecast, score = model(x, m)
    assert forecast.shape == (3, 4) and score.shape == (3, 4)
    g = model.gate.values()
    assert ((g >= 0) & (g <= 1)).all()


@pytest.mark.parametrize("n_layers", [1, 3])
def test_final_block_on_the_last_position_equals_the_full_sequence(n_layers):
    """The encoder computes only the last position in its final block; every block run on the
    whole sequence gives the same last position."""
    torch.manual_seed(0)
    model = SpreadTransformer(ModelConfig(n_features=6, n_targets=4, history=7, d_model=16, n_heads=2,
                                          n_layers=n_layers)).eval()
    x, m = torch.randn(3, 7, 6), (torch.rand(3, 7, 6) < 0.2).float()
    with torch.no_grad():
        h = model.input(torch.cat([model.gate(x), m], dim=-1))
        h = h + model.time_proj(model.time2vec(model.steps)) + model.position
        for block in model.blocks:
            h = block(h)
        full = model.norm(h[:, -1])
        torch.testing.assert_close(model.encode(x, m), full, rtol=1e-5, atol=1e-6)


def test_forward_from_day_terms_equals_forward():
    """Serving keeps each day's terms (input projection, linear-path share) and slides them; the
    forecast from a window's day terms equals the forward pass on the window, with a trained-like
    linear path and missing inputs, and day terms computed one day at a time equal the batch's."""
    torch.manual_seed(1)
    model = SpreadTransformer(ModelConfig(n_features=9, n_targets=5, history=6, d_model=16, n_heads=2,
                                          n_layers=2, skip_decays=(0.0, 0.7))).eval()
    torch.nn.init.normal_(model.skip.weight)
    x, m = torch.randn(4, 6, 9), (torch.rand(4, 6, 9) < 0.2).float()
    with torch.no_grad():
        projected, linear = model.day_terms(x, m)
        assert projected.shape == (4, 6, 16) and linear.shape == (4, 6, 2, 10)
        for got, want in zip(model.from_day_terms(projected, linear), model(x, m)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        one_day = model.day_terms(x[1, 3], m[1, 3])
        torch.testing.assert_close(one_day[0], projected[1, 3], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(one_day[1], linear[1, 3], rtol=1e-5, atol=1e-6)


def test_causal_encoder_ignores_nothing_of_its_window_but_only_its_window():
    model = tiny_model().eval()
    x, m = torch.randn(2, 5, 6), torch.zeros(2, 5, 6)
    base = model(x, m)[0]
    x2 = x.clone()
    x2[:, 0] += 3.0                        # the oldest day of the window still matters
    assert not torch.allclose(model(x2, m)[0], base)


def test_rank_loss_prefers_correct_order():
    y = torch.tensor([[1.0, 0.0, -1.0]])
    have = torch.ones_like(y, dtype=torch.bool)
    right = losses.pairwise_rank(torch.tensor([[2.0, 0.0, -2.0]]), y, have)
    wrong = losses.pairwise_rank(torch.tensor([[-2.0, 0.0, 2.0]]), y, have)
    assert right < wrong
    assert losses.gate_weight(1.0, 0, 3) == 0.0 and losses.gate_weight(1.0, 3, 3) == 1.0


def test_huber_ignores_missing_labels():
    f = torch.tensor([[0.0, 5.0]])
    y = torch.tensor([[0.0, float("nan")]])
    assert losses.huber(f, y, ~torch.isnan(y), 0.2).item() == 0.0


def test_schedule_is_pure_function_of_step():
    assert lr_at(0, 100, 10, 1.0, "cosine") == pytest.approx(0.1)
    assert lr_at(10, 100, 10, 1.0, "cosine") == pytest.approx(1.0)
    assert lr_at(99, 100, 10, 1.0, "cosine") < 0.1
    assert lr_at(30, 100, 0, 1.0, "onecycle") == pytest.approx(1.0)


def test_checkpoint_round_trip_and_refusals(tmp_path):
    model = tiny_model()
    meta = {"model": model.cfg.to_dict(), "features": list("abcdef"), "targets": list("wxyz")}
    checkpoint.save(tmp_path / "best", {"model": model.state_dict()}, meta)
    state, loaded = checkpoint.load(tmp_path / "best")
    rebuilt = checkpoint.build_model(loaded)
    rebuilt.load_state_dict(state["model"])
    x, m = torch.randn(2, 5, 6), torch.zeros(2, 5, 6)
    torch.testing.assert_close(rebuilt.eval()(x, m)[0], model.eval()(x, m)[0])

    data = (tmp_path / "best.pt").read_bytes()
    (tmp_path / "best.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="does not match its metadata"):
        checkpoint.load(tmp_path / "best")
    (tmp_path / "best.json").unlink()
    with pytest.raises(CheckpointError, match=r"best\.json: checkpoint file not found"):
        checkpoint.load(tmp_path / "best")


@pytest.mark.parametrize("policy,expected", [("threshold", ["a", "c"]), ("top_k", ["a", "c", "d"]),
                                             ("mass", ["a", "c", "d"])])
def test_prune_policies(policy, expected):
    gates = np.array([0.9, 0.05, 0.8, 0.3, 0.01])
    kept, report = select(gates, list("abcde"), PruneConfig(policy=policy, threshold=0.5, top_k=3,
                                                             mass=0.9, min_keep=1))
    assert kept == expected
    assert [r["feature"] for r in report][:2] == ["a", "c"]


def test_prune_stable_under_tiny_gate_noise():
    gates = np.array([0.5, 0.5, 0.5, 0.2])
    cfg = PruneConfig(policy="top_k", top_k=2, min_keep=1)
    assert select(gates, list("abcd"), cfg)[0] == select(gates + [1e-9, 0, -1e-9, 0], list("abcd"), cfg)[0]
