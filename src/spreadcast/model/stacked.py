"""Lag heads of one shape served as one module: every layer runs once for all heads (batched
matrix products over a leading head axis) instead of once per head.

A served day is one window per head; at the default size each layer's work is so small that
the cost is the number of operations, not their size, so H heads in one pass cost about what
one head costs. Inference only: the weights are copied out of the trained heads (evaluation
mode, no dropout), and each head's forecast equals its own `SpreadTransformer.forward` to float
rounding (`Forecaster.freeze` checks it before serving).

What costs the same and is done once at construction instead of every day: the feature gate is
folded into the maps that read the gated inputs, each norm's scale and shift into the map after
it. The last block computes its keys and values for every day and its query for the last day
alone (the only position read). Causal attention over a long window runs in chunks of
`ATTENTION_CHUNK` queries, each against the keys up to its last, so the masked half of the
window is mostly not computed.

Shapes: H heads, B windows, L days, F features per head, C model width, K linear-path
averages, T the largest head's target count (a head with fewer targets is padded with zeros and
sliced back by the caller).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spreadcast.model.net import SpreadTransformer

ATTENTION_CHUNK = 64     # queries per causal-attention call over the window (see `StackedHeads`)

# what must agree for heads to share one pass (the target counts may differ: padded)
SHAPE_KEYS = ("n_features", "history", "d_model", "n_heads", "n_layers", "ff_mult", "time2vec_dim", "positional")


def shape_of(model: SpreadTransformer) -> tuple:
    return tuple(getattr(model.cfg, k) for k in SHAPE_KEYS) + (len(model.cfg.skip_decays),)


def stackable(models: list[SpreadTransformer]) -> bool:
    """Whether the models can be served as one `StackedHeads` (two or more of one shape, eval mode)."""
    return len(models) > 1 and len({shape_of(m) for m in models}) == 1 and not any(m.training for m in models)


class StackedHeads(nn.Module):
    """The forecasts of several `SpreadTransformer`s of one shape in one pass (see the module)."""

    def __init__(self, models: list[SpreadTransformer]):
        super().__init__()
        assert stackable(models), "stacked heads need two or more models of one shape, in eval mode"
        cfg = models[0].cfg
        self.n_heads, self.history, self.n_layers = cfg.n_heads, cfg.history, cfg.n_layers
        width = max(m.cfg.n_targets for m in models)

        def stack(get, pad_last: bool = False) -> torch.Tensor:
            parts = [get(m).detach().float() for m in models]
            if pad_last:
                parts = [F.pad(p, (0, width - p.shape[-1])) for p in parts]
            return torch.stack(parts).contiguous()

        with torch.no_grad():
            n, k = cfg.n_features, len(cfg.skip_decays)
            # the gate folded into what reads the gated inputs: x @ (g * W) = (g * x) @ W. The
            # two per-day maps (F inputs to C, and to K x T) are kept output-major, (H, out, F):
            # a day is then one contiguous dot product per output, about twice as fast as (F, out)
            self.register_buffer("in_x", stack(lambda m: m.input.weight[:, :n] * m.gate.values()))  # (H, C, F)
            self.register_buffer("in_m", stack(lambda m: m.input.weight[:, n:].T))          # (H, F, C)
            self.register_buffer("in_b", stack(lambda m: m.input.bias[None]))               # (H, 1, C)
            self.register_buffer("skip_w", stack(lambda m: _skip_terms(m, width)))          # (H, K * T, F)
            self.register_buffer("position", stack(_position_terms))                        # (H, L, C)
            for i in range(cfg.n_layers):
                for name, get in _block_parts(i, last=i == cfg.n_layers - 1).items():
                    self.register_buffer(f"b{i}_{name}", stack(get))
            # only the forecast half of the outputs (the ranking score is a training signal),
            # the final norm's scale and shift folded in
            self.register_buffer("head_w", stack(lambda m: _after_norm(m.norm, m.head, m.cfg.n_targets)[0], True))
            self.register_buffer("head_b", stack(lambda m: _after_norm(m.norm, m.head, m.cfg.n_targets)[1], True))
            self.register_buffer("kernels", stack(lambda m: m.pool.kernels(cfg.history)))   # (H, K, L)
            self.n_averages = k
            # causal attention over long windows in chunks of queries, each against the keys up
            # to its last: the fused kernel skips no masked block of one square window
            self.chunks = [(a, min(a + ATTENTION_CHUNK, cfg.history)) for a in range(0, cfg.history, ATTENTION_CHUNK)]
            for j, (a, e) in enumerate(self.chunks[1:], start=1):
                self.register_buffer(f"mask{j}", torch.zeros(e - a, e).masked_fill(
                    torch.ones(e - a, e, dtype=torch.bool).tril(a).logical_not(), float("-inf")))
        self.eval()

    # -- the two ways in: whole windows, or each day's terms kept while serving ----------------
    def forward(self, x: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
        """Forecasts (H, B, T) from each head's windows x, missing (H, B, L, F)."""
        projected, linear = self.day_terms(x, missing)
        return self.from_day_terms(projected, linear)

    def day_terms(self, x: torch.Tensor, missing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each day's input projection (H, ..., C) and its linear-path terms (H, ..., K, T),
        for days x, missing (H, ..., F) (as `SpreadTransformer.day_terms`, forecast half)."""
        lead, feats = x.shape[:-1], x.shape[-1]
        x, missing = x.reshape(lead[0], -1, feats), missing.reshape(lead[0], -1, feats)
        projected = torch.baddbmm(self.in_b, x, self.in_x.transpose(1, 2))
        if torch.jit.is_tracing():
            projected = projected + torch.bmm(missing, self.in_m)
        else:     # eager (serving a day): only the features missing somewhere add anything
            some = missing.flatten(0, 1).any(dim=0).nonzero().flatten()
            if some.numel():
                projected = projected + torch.bmm(missing[:, :, some], self.in_m[:, some])
        linear = torch.bmm(x, self.skip_w.transpose(1, 2))                      # (H, n, K * T)
        return projected.reshape(*lead, -1), linear.reshape(*lead, self.n_averages, -1)

    def from_day_terms(self, projected: torch.Tensor, linear: torch.Tensor) -> torch.Tensor:
        """Forecasts (H, B, T) from the window's day terms (H, B, L, C) and (H, B, L, K, T)."""
        H, B, L, C = projected.shape
        assert L == self.history, f"stacked heads serve windows of {self.history} days, not {L}"
        h = projected + self.position[:, None]
        for i in range(self.n_layers):
            h = self._block(i, h, last_only=i == self.n_layers - 1)           # last: (H, B, 1, C)
        out = torch.baddbmm(self.head_b, F.layer_norm(h[:, :, -1], (C,)), self.head_w)     # (H, B, T)
        return out + torch.einsum("hkl,hblkt->hbt", self.kernels, linear)

    # -- the blocks (`net.Block`, pre-norm, causal attention; the last computes the last day) --
    def _block(self, i: int, h: torch.Tensor, last_only: bool) -> torch.Tensor:
        """Block i; each norm's scale and shift are folded into the map after it."""
        p = lambda name: getattr(self, f"b{i}_{name}")                          # noqa: E731
        H, B, L, C = h.shape
        n, width = self.n_heads, C // self.n_heads
        a = F.layer_norm(h, (C,)).reshape(H, B * L, C)
        if last_only:     # the keys and values of every day, the query of the last alone
            k, v = torch.baddbmm(p("kv_b"), a, p("kv_w")).view(H * B, L, 2, n, width).permute(2, 0, 3, 1, 4)
            h = h[:, :, -1:]
            q = torch.baddbmm(p("q_b"), a.view(H, B, L, C)[:, :, -1], p("q_w")).view(H * B, 1, n, width)
            y = F.scaled_dot_product_attention(q.transpose(1, 2), k, v)       # (H*B, n, 1, C/n)
            L = 1
        else:
            q, k, v = torch.baddbmm(p("qkv_b"), a, p("qkv_w")).view(H * B, L, 3, n, width).permute(2, 0, 3, 1, 4)
            y = self._causal(q, k, v)
        y = y.transpose(1, 2).reshape(H, B * L, C)
        h = torch.baddbmm(p("out_b"), y, p("out_w")).view(H, B, L, C) + h
        a = F.gelu(torch.baddbmm(p("fc1_b"), F.layer_norm(h, (C,)).reshape(H, B * L, C), p("fc1_w")))
        return torch.baddbmm(p("fc2_b"), a, p("fc2_w")).view(H, B, L, C) + h

    def _causal(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal attention (N, n, L, C/n), by chunks of queries (`chunks`)."""
        if len(self.chunks) == 1:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        first = self.chunks[0][1]
        out = [F.scaled_dot_product_attention(q[:, :, :first], k[:, :, :first], v[:, :, :first], is_causal=True)]
        for j, (a, e) in enumerate(self.chunks[1:], start=1):
            out.append(F.scaled_dot_product_attention(q[:, :, a:e], k[:, :, :e], v[:, :, :e],
                                                      attn_mask=getattr(self, f"mask{j}")))
        return torch.cat(out, dim=2)


def _position_terms(model: SpreadTransformer) -> torch.Tensor:
    """What `SpreadTransformer._encoder` adds to the projected inputs of a full window (L, C)."""
    out = model.time_proj(model.time2vec(model.steps))
    return out + model.position if model.position is not None else out


def _skip_terms(model: SpreadTransformer, width: int) -> torch.Tensor:
    """The linear path's forecast half per day, gate folded in, (K * width, F), average-major,
    each average's targets padded to `width`."""
    cfg = model.cfg
    w = model.skip.weight[:cfg.n_targets].view(cfg.n_targets, len(cfg.skip_decays), cfg.n_features)
    w = F.pad(w.permute(1, 0, 2), (0, 0, 0, width - cfg.n_targets))             # (K, width, F)
    return (w * model.gate.values()).flatten(0, 1)


def _after_norm(norm: nn.LayerNorm, linear: nn.Linear, rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`linear` after `norm`'s scale s and shift b, as one map of the unscaled norm:
    (z * s + b) W' + c = z (s W') + (b W' + c). Returns the weights (in, out) and bias (1, out),
    of the first `rows` outputs (all by default)."""
    w, c = linear.weight[:rows], linear.bias[:rows]
    return (norm.weight[:, None] * w.T), (c + w @ norm.bias)[None]


def _block_parts(i: int, last: bool) -> dict:
    """Block i's weights, as (H-stackable) tensors: linear maps as (in, out), biases as (1, out).
    The last block keeps the query map apart from the key and value maps."""
    b = lambda m: m.blocks[i]                                                   # noqa: E731
    qkv = lambda m: _after_norm(b(m).norm1, b(m).attn.qkv)                      # noqa: E731
    C = lambda m: m.cfg.d_model                                                 # noqa: E731
    parts = {"out_w": lambda m: b(m).attn.out.weight.T, "out_b": lambda m: b(m).attn.out.bias[None],
             "fc1_w": lambda m: _after_norm(b(m).norm2, b(m).mlp[0])[0],
             "fc1_b": lambda m: _after_norm(b(m).norm2, b(m).mlp[0])[1],
             "fc2_w": lambda m: b(m).mlp[2].weight.T, "fc2_b": lambda m: b(m).mlp[2].bias[None]}
    if last:
        parts.update({"q_w": lambda m: qkv(m)[0][:, :C(m)], "q_b": lambda m: qkv(m)[1][:, :C(m)],
                      "kv_w": lambda m: qkv(m)[0][:, C(m):], "kv_b": lambda m: qkv(m)[1][:, C(m):]})
    else:
        parts.update({"qkv_w": lambda m: qkv(m)[0], "qkv_b": lambda m: qkv(m)[1]})
    return parts
