"""Lag heads of one shape served as one module: every layer runs once for all heads (batched
matrix products over a leading head axis) instead of once per head.

A served day is one window per head; at the default size each layer's work is so small that
the cost is the number of operations, not their size, so H heads in one pass cost about what
one head costs. Inference only: the weights are copied out of the trained heads (evaluation
mode, no dropout), and each head's forecast equals its own `SpreadTransformer.forward` to float
rounding (`Forecaster.freeze` checks it before serving).

Shapes: H heads, B windows, L days, F features per head, C model width, K linear-path
averages, T the largest head's target count (a head with fewer targets is padded with zeros and
sliced back by the caller).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spreadcast.model.net import SpreadTransformer

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
            self.register_buffer("gate", stack(lambda m: m.gate.values()))                 # (H, F)
            n = cfg.n_features          # the input projection reads [gated x, missing]: two halves
            self.register_buffer("in_x", stack(lambda m: m.input.weight[:, :n].T))          # (H, F, C)
            self.register_buffer("in_m", stack(lambda m: m.input.weight[:, n:].T))          # (H, F, C)
            self.register_buffer("in_b", stack(lambda m: m.input.bias[None]))               # (H, 1, C)
            self.register_buffer("position", stack(_position_terms))                        # (H, L, C)
            for i in range(cfg.n_layers):
                for name, get in _block_parts(i).items():
                    self.register_buffer(f"b{i}_{name}", stack(get))
            self.register_buffer("norm_w", stack(lambda m: m.norm.weight[None]))            # (H, 1, C)
            self.register_buffer("norm_b", stack(lambda m: m.norm.bias[None]))
            # only the forecast half of the outputs (the ranking score is a training signal)
            self.register_buffer("head_w", stack(lambda m: m.head.weight[:m.cfg.n_targets].T, True))   # (H, C, T)
            self.register_buffer("head_b", stack(lambda m: m.head.bias[None, :m.cfg.n_targets], True))  # (H, 1, T)
            self.register_buffer("kernels", stack(lambda m: m.pool.kernels(cfg.history)))   # (H, K, L)
            k = len(cfg.skip_decays)
            self.register_buffer("skip_w", stack(                                            # (H, F, K, T)
                lambda m: m.skip.weight[:m.cfg.n_targets].view(m.cfg.n_targets, k, cfg.n_features).permute(2, 1, 0),
                True).flatten(2))                                                               # (H, F, K * T)
        self.eval()

    # -- the two ways in: whole windows, or each day's terms kept while serving ----------------
    def forward(self, x: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
        """Forecasts (H, B, T) from each head's windows x, missing (H, B, L, F)."""
        projected, linear = self.day_terms(x, missing)
        return self.from_day_terms(projected, linear)

    def day_terms(self, x: torch.Tensor, missing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each day's input projection (H, ..., C) and its linear-path terms (H, ..., K, T),
        for days x, missing (H, ..., F) (as `SpreadTransformer.day_terms`, forecast half)."""
        H, feats = x.shape[0], x.shape[-1]
        lead = x.shape[1:-1]
        gated = (x * self.gate.view((H,) + (1,) * len(lead) + (feats,))).reshape(H, -1, feats)
        projected = torch.baddbmm(self.in_b, gated, self.in_x)
        missing = missing.reshape(H, -1, feats)
        if torch.jit.is_tracing():
            projected = projected + torch.bmm(missing, self.in_m)
        else:     # eager (serving a day): only the features missing somewhere add anything
            some = missing.flatten(0, 1).any(dim=0).nonzero().flatten()
            if some.numel():
                projected = projected + torch.bmm(missing[:, :, some], self.in_m[:, some])
        linear = torch.bmm(gated, self.skip_w)                                  # (H, n, K * T)
        return (projected.reshape(*x.shape[:-1], -1),
                linear.reshape(*x.shape[:-1], -1, self.skip_w.shape[-1] // self.kernels.shape[1]))

    def from_day_terms(self, projected: torch.Tensor, linear: torch.Tensor) -> torch.Tensor:
        """Forecasts (H, B, T) from the window's day terms (H, B, L, C) and (H, B, L, K, T)."""
        H, B, L, C = projected.shape
        assert L == self.history, f"stacked heads serve windows of {self.history} days, not {L}"
        h = projected + self.position[:, None]
        for i in range(self.n_layers):
            h = self._block(i, h, last_only=i == self.n_layers - 1)           # last: (H, B, 1, C)
        encoded = F.layer_norm(h[:, :, -1], (C,)) * self.norm_w + self.norm_b  # (H, B, C)
        out = torch.baddbmm(self.head_b, encoded, self.head_w)                  # (H, B, T)
        return out + torch.einsum("hkl,hblkt->hbt", self.kernels, linear)

    # -- the blocks (`net.Block`, pre-norm, causal attention; the last computes the last day) --
    def _block(self, i: int, h: torch.Tensor, last_only: bool) -> torch.Tensor:
        p = lambda name: getattr(self, f"b{i}_{name}")                          # noqa: E731
        H, B, L, C = h.shape
        a = F.layer_norm(h, (C,)) * p("n1_w")[:, None] + p("n1_b")[:, None]
        qkv = torch.baddbmm(p("qkv_b"), a.reshape(H, B * L, C), p("qkv_w"))  # (H, B*L, 3C)
        q, k, v = qkv.view(H * B, L, 3, self.n_heads, C // self.n_heads).permute(2, 0, 3, 1, 4)
        if last_only:
            y = F.scaled_dot_product_attention(q[:, :, -1:], k, v)             # (H*B, n, 1, C/n)
            h = h[:, :, -1:]
            L = 1
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(H, B * L, C)
        h = torch.baddbmm(p("out_b"), y, p("out_w")).view(H, B, L, C) + h
        a = F.layer_norm(h, (C,)) * p("n2_w")[:, None] + p("n2_b")[:, None]
        a = F.gelu(torch.baddbmm(p("fc1_b"), a.reshape(H, B * L, C), p("fc1_w")))
        return torch.baddbmm(p("fc2_b"), a, p("fc2_w")).view(H, B, L, C) + h


def _position_terms(model: SpreadTransformer) -> torch.Tensor:
    """What `SpreadTransformer._encoder` adds to the projected inputs of a full window (L, C)."""
    out = model.time_proj(model.time2vec(model.steps))
    return out + model.position if model.position is not None else out


def _block_parts(i: int) -> dict:
    """Block i's weights, as (H-stackable) tensors: linear maps as (in, out), biases and norms as (1, out)."""
    b = lambda m: m.blocks[i]                                                   # noqa: E731
    return {"n1_w": lambda m: b(m).norm1.weight[None], "n1_b": lambda m: b(m).norm1.bias[None],
            "qkv_w": lambda m: b(m).attn.qkv.weight.T, "qkv_b": lambda m: b(m).attn.qkv.bias[None],
            "out_w": lambda m: b(m).attn.out.weight.T, "out_b": lambda m: b(m).attn.out.bias[None],
            "n2_w": lambda m: b(m).norm2.weight[None], "n2_b": lambda m: b(m).norm2.bias[None],
            "fc1_w": lambda m: b(m).mlp[0].weight.T, "fc1_b": lambda m: b(m).mlp[0].bias[None],
            "fc2_w": lambda m: b(m).mlp[2].weight.T, "fc2_b": lambda m: b(m).mlp[2].bias[None]}
