"""The gated transformer, one per lag head.

    x (B, L, F), missing (B, L, F)
      -> FeatureGate: x * g, g = sigmoid(logit) in [0, 1] per feature
      -> input projection of [g * x, missing] + Time2Vec(position) (+ learned positions)
      -> n_layers pre-norm blocks (scaled_dot_product_attention, MLP)
      -> LayerNorm, last time step
      -> head: a regression forecast and a ranking score per target of the lag
      + linear path: K exponentially weighted averages of the gated features over the window
        (decay rates learned), mapped straight to the outputs
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass
class ModelConfig:
    n_features: int
    n_targets: int
    history: int
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    ff_mult: int = 2
    dropout: float = 0.1
    time2vec_dim: int = 8
    positional: bool = True
    grad_checkpoint: bool = False
    skip_decays: tuple[float, ...] = (0.0,)     # initial decay per linear-path average; 0 = last day

    def __post_init__(self):
        self.skip_decays = tuple(float(d) for d in self.skip_decays)

    def to_dict(self) -> dict:
        return asdict(self)


SPARSE_GATE = 0.1     # a feature whose gate is below this counts as switched off (gate sparsity)


class FeatureGate(nn.Module):
    def __init__(self, *, n_features: int, init: float = 2.0):
        super().__init__()
        self.logit = nn.Parameter(torch.full((n_features,), init))

    def values(self) -> torch.Tensor:
        return torch.sigmoid(self.logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.values()


class Time2Vec(nn.Module):
    """One linear and k-1 periodic components of a scalar time (Kazemi et al., 2019)."""

    def __init__(self, *, dim: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim) * 0.5)
        self.b = nn.Parameter(torch.zeros(dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        z = t[..., None] * self.w + self.b          # (L, k)
        return torch.cat([z[..., :1], torch.sin(z[..., 1:])], dim=-1)


class DecayPool(nn.Module):
    """K exponentially weighted averages over the window: (B, L, F) -> (B, K * F), kernel-major.

    Kernel k weighs the value `a` days before the last by decay_k ** a, normalised to unit L2
    norm so an average of independent standardised values stays standardised. Each decay is
    sigmoid(logit), learned; a decay of 0 keeps the last day only.
    """

    def __init__(self, *, decays: tuple[float, ...]):
        super().__init__()
        d = torch.tensor(decays, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
        self.logit = nn.Parameter(torch.logit(d))

    def kernels(self, length: int) -> torch.Tensor:
        age = torch.arange(length - 1, -1, -1, device=self.logit.device, dtype=self.logit.dtype)
        w = torch.sigmoid(self.logit)[:, None] ** age                       # (K, L), oldest first
        return w / w.norm(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.kernels(x.shape[1]).to(x.dtype)
        return torch.einsum("kl,blf->bkf", w, x).flatten(1)                # (B, K * F)


class Attention(nn.Module):
    def __init__(self, *, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """(B, L, C) -> (B, L, C), or (B, 1, C) for the last position alone with `last_only`."""
        B, L, C = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, C // self.n_heads).permute(2, 0, 3, 1, 4)
        dropout = self.dropout if self.training else 0.0
        if last_only:       # the last query sees every position: no mask (a causal one would align top-left)
            y = F.scaled_dot_product_attention(q[:, :, -1:], k, v, dropout_p=dropout)
            return self.out(y.transpose(1, 2).reshape(B, 1, C))
        # causal: position i sees only positions <= i, so the last step summarises the window
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        return self.out(y.transpose(1, 2).reshape(B, L, C))     # (B, L, C)


class Block(nn.Module):
    def __init__(self, *, d_model: int, n_heads: int, ff_mult: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model=d_model, n_heads=n_heads, dropout=dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, ff_mult * d_model), nn.GELU(),
                                 nn.Linear(ff_mult * d_model, d_model), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """`last_only`: compute the last position alone (B, 1, C), all the head reads of the
        final block; the keys and values still come from every position."""
        x = self.drop(self.attn(self.norm1(x), last_only)) + (x[:, -1:] if last_only else x)
        x = self.mlp(self.norm2(x)) + x
        return x


class SpreadTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.gate = FeatureGate(n_features=cfg.n_features)
        self.input = nn.Linear(2 * cfg.n_features, cfg.d_model)
        self.time2vec = Time2Vec(dim=cfg.time2vec_dim)
        self.time_proj = nn.Linear(cfg.time2vec_dim, cfg.d_model)
        self.position = nn.Parameter(torch.zeros(cfg.history, cfg.d_model)) if cfg.positional else None
        self.blocks = nn.ModuleList(
            Block(d_model=cfg.d_model, n_heads=cfg.n_heads, ff_mult=cfg.ff_mult, dropout=cfg.dropout)
            for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, 2 * cfg.n_targets)
        # linear path from decayed averages of the gated features: at low signal-to-noise the
        # best forecasts are close to linear, and the encoder then only has to learn the rest
        self.pool = DecayPool(decays=cfg.skip_decays)
        self.skip = nn.Linear(len(cfg.skip_decays) * cfg.n_features, 2 * cfg.n_targets, bias=False)
        nn.init.zeros_(self.skip.weight)
        self.register_buffer("steps", torch.linspace(0.0, 1.0, cfg.history), persistent=False)

    def encode(self, x: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
        return self.norm(self._blocks(x, missing)[:, -1])                 # (B, C)

    def _blocks(self, x: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
        """The encoder's output at the last position, (B, 1, C): the final block computes that
        position alone, the only one read downstream (causal attention: no earlier position
        depends on it)."""
        return self._encoder(self.input(torch.cat([self.gate(x), missing], dim=-1)))

    def _encoder(self, h: torch.Tensor) -> torch.Tensor:
        """The blocks over projected inputs h (B, L, C), positions added; (B, 1, C)."""
        L = h.shape[1]
        h = h + self.time_proj(self.time2vec(self.steps[-L:]))
        if self.position is not None:
            h = h + self.position[-L:]
        for i, block in enumerate(self.blocks):
            last_only = i == len(self.blocks) - 1
            if self.cfg.grad_checkpoint and self.training:
                h = checkpoint(block, h, last_only, use_reentrant=False)
            else:
                h = block(h, last_only)
        return h                                                           # (B, 1, C)

    def day_terms(self, x: torch.Tensor, missing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What each day contributes whatever its place in the window, for days (..., F): its
        input projection (..., C) and its share of the linear path before the averages' weights,
        (..., K, 2T). Serving computes them once per day and keeps those of the window's days
        (`from_day_terms`), instead of projecting every day of the window again each day."""
        gated = self.gate(x)
        k = len(self.cfg.skip_decays)
        weight = self.skip.weight.view(self.skip.out_features, k, self.cfg.n_features)
        return (self.input(torch.cat([gated, missing], dim=-1)),
                torch.einsum("...f,okf->...ko", gated, weight))

    def from_day_terms(self, projected: torch.Tensor, linear: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward` from the day terms of a window's days, (B, L, C) and (B, L, K, 2T)."""
        encoded = self.norm(self._encoder(projected)[:, -1])
        w = self.pool.kernels(projected.shape[1]).to(linear.dtype)              # (K, L)
        out = self.head(encoded) + torch.einsum("kl,blko->bo", w, linear)
        forecast, score = out.chunk(2, dim=-1)
        return forecast, score

    def activations(self, x: torch.Tensor, missing: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder output, head input and head output, for diagnostics."""
        encoded = self._blocks(x, missing)[:, -1]
        head_in = self.norm(encoded)
        return {"encoder_out": encoded, "head_in": head_in,
                "head_out": self.head(head_in) + self.linear(x)}

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(self.pool(self.gate(x)))                          # (B, 2T)

    def forward(self, x: torch.Tensor, missing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.encode(x, missing)) + self.linear(x)          # (B, 2T)
        forecast, score = out.chunk(2, dim=-1)
        return forecast, score
