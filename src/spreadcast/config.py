"""params.yaml sections as validated dataclasses.

Every stage loads only its own sections. Validation happens on load: an unknown key, a value
of the wrong type or out of range is a one-line `ConfigError` naming `section.key` and what
is allowed, before any work starts.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from spreadcast.errors import ConfigError


def _check_type(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is list:
        (inner,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_check_type(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {key}")


def build(cls: type, raw: dict | None, section: str):
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{section}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}: unknown key (allowed: {', '.join(names)})")
    values = {k: _check_type(v, hints[k], f"{section}.{k}") for k, v in raw.items()}
    obj = cls(**values)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(section)
    return obj


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


@dataclass
class SyntheticConfig:
    """The embedded synthetic market (see `spreadcast.data.synthetic`)."""

    seed: int = 7
    n_train_days: int = 1900
    n_test_days: int = 134
    n_scored_days: int = 90
    overlap_days: int = 0
    n_lme: int = 4
    n_jpx: int = 6
    n_us: int = 95
    n_fx: int = 38
    lags: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    targets_per_lag: int = 106
    signal_strength: float = 0.12       # lead-lag: drift on smoothed leader returns
    n_signals: int = 4
    signal_persistence: float = 0.9
    level_strength: float = 0.0         # levels: drift on published stationary series
    n_levels: int = 0                   # published rate-like columns (RATE_k)
    level_persistence: float = 0.97
    reversion_strength: float = 0.0     # mean reversion: share of the gap to the trailing mean closed a day
    reversion_halflife: float = 10.0    # days, of that trailing mean
    drift_strength: float = 0.0         # persistent mean returns, in units of each asset's daily volatility
    tail_df: float = 4.0                # Student-t degrees of freedom of the shocks
    vol_shock_rate: float = 0.0         # daily chance that a volatility episode starts
    vol_shock_size: float = 2.5         # shock volatility multiplier during an episode
    regime_day: int = 0                 # >0: from this day on every mechanism is scaled by regime_factor
    regime_factor: float = 1.0          # 0.5 weakens, 0 turns off, -1 flips the sign
    late_start_days: int = 0            # the JPX market publishes nothing before this day
    holiday_rate: float = 0.03

    def validate(self, s: str) -> None:
        _require(self.n_train_days >= 60, f"{s}.n_train_days", "must be at least 60")
        _require(self.n_test_days >= 1, f"{s}.n_test_days", "must be at least 1")
        _require(0 <= self.n_scored_days <= self.n_test_days, f"{s}.n_scored_days",
                 f"must be between 0 and n_test_days ({self.n_test_days})")
        _require(0 <= self.overlap_days <= min(self.n_test_days, self.n_train_days),
                 f"{s}.overlap_days", "must be between 0 and n_test_days")
        _require(self.n_lme >= 1 and self.n_jpx >= 1 and self.n_us >= 2 and self.n_fx >= 1,
                 f"{s}.n_lme/n_jpx/n_us/n_fx", "need at least 1 LME, 1 JPX, 2 US, 1 FX instrument")
        _require(self.n_lme <= 4, f"{s}.n_lme", "at most 4 (the LME metals)")
        _check_lags(self.lags, f"{s}.lags")
        _require(self.targets_per_lag >= 2, f"{s}.targets_per_lag", "must be at least 2")
        _require(0.0 <= self.signal_strength <= 1.0, f"{s}.signal_strength", "must be in [0, 1]")
        _require(self.n_signals >= 1, f"{s}.n_signals", "must be at least 1")
        _require(0.0 <= self.signal_persistence < 1.0, f"{s}.signal_persistence", "must be in [0, 1)")
        _require(0.0 <= self.holiday_rate < 0.5, f"{s}.holiday_rate", "must be in [0, 0.5)")
        _require(0.0 <= self.level_strength <= 1.0, f"{s}.level_strength", "must be in [0, 1]")
        _require(self.n_levels >= 0, f"{s}.n_levels", "must be at least 0")
        _require(self.level_strength == 0.0 or self.n_levels >= 1, f"{s}.n_levels",
                 "must be at least 1 when level_strength > 0")
        _require(0.0 <= self.level_persistence < 1.0, f"{s}.level_persistence", "must be in [0, 1)")
        _require(0.0 <= self.reversion_strength < 1.0, f"{s}.reversion_strength", "must be in [0, 1)")
        _require(self.reversion_halflife > 0.0, f"{s}.reversion_halflife", "must be positive")
        _require(0.0 <= self.drift_strength <= 1.0, f"{s}.drift_strength", "must be in [0, 1]")
        _require(self.tail_df > 2.0, f"{s}.tail_df", "must be above 2 (finite variance)")
        _require(0.0 <= self.vol_shock_rate < 1.0, f"{s}.vol_shock_rate", "must be in [0, 1)")
        _require(self.vol_shock_size > 0.0, f"{s}.vol_shock_size", "must be positive")
        n_days = self.n_train_days + self.n_test_days
        _require(0 <= self.regime_day < n_days, f"{s}.regime_day", f"must be in [0, {n_days})")
        _require(-2.0 <= self.regime_factor <= 2.0, f"{s}.regime_factor", "must be in [-2, 2]")
        _require(0 <= self.late_start_days < self.n_train_days // 2, f"{s}.late_start_days",
                 "must be in [0, n_train_days / 2)")


def _check_lags(lags: list[int], key: str) -> None:
    _require(len(lags) > 0, key, "must list at least one lag")
    _require(all(1 <= k <= 4 for k in lags), key, f"lags must be in 1..4, got {lags}")
    _require(len(set(lags)) == len(lags) and lags == sorted(lags), key,
             f"lags must be distinct and sorted, got {lags}")


@dataclass
class DataConfig:
    """Which dataset folder the pipeline reads, and which lags it models."""

    dir: str = "artifacts/synthetic/dataset"
    lags: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    label_tolerance: float = 1e-6

    def validate(self, s: str) -> None:
        _require(bool(self.dir.strip()), f"{s}.dir", "must name a dataset folder")
        _check_lags(self.lags, f"{s}.lags")
        _require(self.label_tolerance > 0, f"{s}.label_tolerance", "must be positive")


@dataclass
class FeaturesConfig:
    return_horizons: list[int] = field(default_factory=lambda: [1, 5, 20])
    vol_window: int = 20
    level_window: int = 60
    spread_z_window: int = 20
    spreads: bool = True
    revealed_labels: bool = True
    deviation_halflives: list[float] = field(default_factory=lambda: [5.0, 20.0])
    levels: bool = True
    own: bool = True           # each target's own series' features, for the blend's own-series component

    def validate(self, s: str) -> None:
        _require(len(self.return_horizons) > 0 and all(1 <= h <= 250 for h in self.return_horizons),
                 f"{s}.return_horizons", "needs at least one horizon, each in 1..250")
        _require(len(set(self.return_horizons)) == len(self.return_horizons), f"{s}.return_horizons",
                 "horizons must be distinct")
        for key in ("vol_window", "level_window", "spread_z_window"):
            _require(2 <= getattr(self, key) <= 500, f"{s}.{key}", "must be in 2..500")
        _require(all(0.5 <= h <= 60 for h in self.deviation_halflives), f"{s}.deviation_halflives",
                 "each half-life must be in 0.5..60 days")
        _require(len(set(self.deviation_halflives)) == len(self.deviation_halflives), f"{s}.deviation_halflives",
                 "half-lives must be distinct")


@dataclass
class PrescreenConfig:
    max_missing: float = 0.5
    min_std: float = 1e-8
    max_abs_corr: float = 0.995
    top_k: int = 256
    min_abs_ic: float = 0.0
    group_by_column: bool = True
    rank_by: Literal["ic", "random"] = "ic"    # random: a label-blind control, same count kept
    ic_blocks: int = 1                          # the IC is taken in this many consecutive blocks of days
    keep_levels: bool = False                   # every usable level feature is a model input, screened or not

    def validate(self, s: str) -> None:
        _require(0.0 <= self.max_missing <= 1.0, f"{s}.max_missing", "must be in [0, 1]")
        _require(self.min_std >= 0.0, f"{s}.min_std", "must be >= 0")
        _require(0.0 < self.max_abs_corr <= 1.0, f"{s}.max_abs_corr", "must be in (0, 1]")
        _require(self.top_k >= 1, f"{s}.top_k", "must be at least 1")
        _require(self.min_abs_ic >= 0.0, f"{s}.min_abs_ic", "must be >= 0")
        _require(self.ic_blocks >= 1, f"{s}.ic_blocks", "must be at least 1")
        _require(self.rank_by == "ic" or self.min_abs_ic == 0.0, f"{s}.min_abs_ic",
                 "must be 0 with rank_by: random (a threshold on the IC reads the labels)")


@dataclass
class ScaleConfig:
    method: Literal["standard", "robust"] = "standard"
    clip: float = 5.0

    def validate(self, s: str) -> None:
        _require(self.clip > 0, f"{s}.clip", "must be positive")


@dataclass
class WindowsConfig:
    history: int = 32
    val_days: int = 250
    holdout_days: int = 250
    embargo: int = 5

    def validate(self, s: str) -> None:
        _require(self.history >= 1, f"{s}.history", "must be at least 1")
        _require(self.val_days >= 10, f"{s}.val_days", "must be at least 10")
        _require(self.holdout_days >= 10, f"{s}.holdout_days", "must be at least 10")
        _require(self.embargo >= 5, f"{s}.embargo", "must be at least max lag + 1 = 5")


@dataclass
class TrainConfig:
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    ff_mult: int = 2
    dropout: float = 0.1
    time2vec_dim: int = 8
    positional: bool = True
    skip_decays: list[float] = field(default_factory=lambda: [0.0, 0.9])   # linear path's averages
    linear_start_alpha: float = 0.0   # > 0: the linear path starts at its ridge fit; 0: at zero
    linear_lr_mult: float = 1.0       # the linear path's weights learn this much faster
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    schedule: Literal["cosine", "onecycle"] = "cosine"
    warmup_epochs: int = 1
    regression_loss: Literal["huber", "hybrid"] = "huber"
    huber_delta: float = 0.2
    rank_weight: float = 1.0
    gate_l1: float = 0.1
    gate_lr_mult: float = 100.0
    gate_warmup_epochs: int = 3
    patience: int = 6
    epoch_folds: int = 0          # >0: the last this many walk-forward folds help choose the epoch (0: validation alone)
    evidence_folds: int = 0       # >0: the head's configuration also forecasts the last this many folds, for the blend
    recency_halflife: float = 0.0  # >0: each epoch draws its rows, recent days likelier (0: every row once)
    amp: bool = False
    grad_checkpoint: bool = False
    activation_stats: bool = False
    seed: int = 0
    processes: int = 1           # > 1: data-parallel under torchrun (gloo on CPU, NCCL on GPUs)
    compile: bool = False        # torch.compile the training forward pass
    pin_memory: bool = True      # page-locked batches on CUDA (no effect on CPU)
    tf32: bool = True            # TF32 matmuls for fp32 on CUDA (no effect on CPU or under amp)
    windows_on_device: bool = True   # exported windows kept on the GPU when they fit; false: host batches

    def validate(self, s: str) -> None:
        _require(1 <= self.processes <= 64, f"{s}.processes", "must be in 1..64")
        _require(self.d_model >= 8, f"{s}.d_model", "must be at least 8")
        _require(self.n_heads >= 1 and self.d_model % self.n_heads == 0, f"{s}.n_heads",
                 f"must divide d_model ({self.d_model})")
        _require(self.n_layers >= 1, f"{s}.n_layers", "must be at least 1")
        _require(self.ff_mult >= 1, f"{s}.ff_mult", "must be at least 1")
        _require(0.0 <= self.dropout < 1.0, f"{s}.dropout", "must be in [0, 1)")
        _require(self.time2vec_dim >= 2, f"{s}.time2vec_dim", "must be at least 2")
        _require(self.linear_start_alpha >= 0.0, f"{s}.linear_start_alpha", "must be >= 0")
        _require(self.linear_lr_mult > 0.0, f"{s}.linear_lr_mult", "must be positive")
        _require(len(self.skip_decays) >= 1 and all(0.0 <= d < 1.0 for d in self.skip_decays),
                 f"{s}.skip_decays", "must list at least one decay, each in [0, 1)")
        _require(self.epochs >= 1, f"{s}.epochs", "must be at least 1")
        _require(self.recency_halflife == 0.0 or self.recency_halflife >= 5.0, f"{s}.recency_halflife",
                 "must be 0 (every row once an epoch) or >= 5 days")
        _require(self.batch_size >= 1, f"{s}.batch_size", "must be at least 1")
        _require(0.0 < self.lr < 1.0, f"{s}.lr", "must be in (0, 1)")
        _require(self.weight_decay >= 0.0, f"{s}.weight_decay", "must be >= 0")
        _require(self.grad_clip > 0.0, f"{s}.grad_clip", "must be positive")
        _require(self.warmup_epochs >= 0, f"{s}.warmup_epochs", "must be >= 0")
        _require(self.huber_delta > 0.0, f"{s}.huber_delta", "must be positive")
        _require(self.rank_weight >= 0.0, f"{s}.rank_weight", "must be >= 0")
        _require(self.gate_l1 >= 0.0, f"{s}.gate_l1", "must be >= 0")
        _require(self.gate_lr_mult > 0.0, f"{s}.gate_lr_mult", "must be positive")
        _require(self.gate_warmup_epochs >= 0, f"{s}.gate_warmup_epochs", "must be >= 0")
        _require(self.patience >= 1, f"{s}.patience", "must be at least 1")
        _require(0 <= self.epoch_folds <= 10, f"{s}.epoch_folds", "must be in 0..10")
        _require(0 <= self.evidence_folds <= 10, f"{s}.evidence_folds", "must be in 0..10")


@dataclass
class PruneConfig:
    policy: Literal["threshold", "top_k", "mass", "validate"] = "validate"
    score: Literal["saliency", "gate"] = "saliency"   # gate x linear-path weight norm, or the gate alone
    pool_lags: bool = True         # score each feature by its mean score over every lag head
    threshold: float = 0.5
    top_k: int = 4
    mass: float = 0.9
    min_keep: int = 4
    candidates: list[int] = field(default_factory=lambda: [4, 8, 16, 32])   # counts `validate` tries
    ridge_alpha: float = 1.0       # the ridge that scores each candidate count

    def validate(self, s: str) -> None:
        _require(len(self.candidates) >= 1 and all(k >= 1 for k in self.candidates), f"{s}.candidates",
                 "must list at least one count, each at least 1")
        _require(self.ridge_alpha > 0.0, f"{s}.ridge_alpha", "must be positive")
        _require(0.0 < self.threshold < 1.0, f"{s}.threshold", "must be in (0, 1)")
        _require(self.top_k >= 1, f"{s}.top_k", "must be at least 1")
        _require(0.0 < self.mass <= 1.0, f"{s}.mass", "must be in (0, 1]")
        _require(self.min_keep >= 1, f"{s}.min_keep", "must be at least 1")


@dataclass
class FinetuneConfig:
    epochs: int = 10
    lr: float = 1e-4
    tolerance: float = 0.05
    warmup_epochs: int = 2
    unfreeze: Literal["staged", "all"] = "staged"
    init: Literal["zero", "normal", "kaiming"] = "zero"
    rescale: bool = False
    linear_start_alpha: float = 1.0   # > 0: re-solve the kept inputs' linear path by ridge first

    def validate(self, s: str) -> None:
        _require(self.linear_start_alpha >= 0.0, f"{s}.linear_start_alpha", "must be >= 0")
        _require(self.epochs >= 1, f"{s}.epochs", "must be at least 1")
        _require(self.warmup_epochs >= 0, f"{s}.warmup_epochs", "must be >= 0")
        _require(0.0 < self.lr < 1.0, f"{s}.lr", "must be in (0, 1)")
        _require(self.tolerance >= 0.0, f"{s}.tolerance", "must be >= 0")


@dataclass
class EvaluateConfig:
    rolling_window: int = 20

    def validate(self, s: str) -> None:
        _require(self.rolling_window >= 2, f"{s}.rolling_window", "must be at least 2")


@dataclass
class WalkForwardConfig:
    folds: int = 3             # expanding-window folds over the training days (each after an embargo)
    weigh: Literal["equal", "fit_days"] = "equal"   # a choice's mean over the folds: alike, or by fitting days

    def validate(self, s: str) -> None:
        _require(1 <= self.folds <= 10, f"{s}.folds", "must be in 1..10")


@dataclass
class BlendConfig:
    enabled: bool = True       # false: the transformer alone is served
    max_weight: float = 0.3    # bound of each component's weight (centred-rank units per unit spread)
    fit_on: Literal["walk_forward", "validation"] = "walk_forward"   # the days the weights are fit on
    pool_lags: bool = False    # true: one set of weights fit on every target, for every lag; false: one set per lag
    ridge_alphas: list[float] = field(default_factory=lambda: [0.3, 1.0, 3.0, 10.0, 30.0, 100.0])
    ridge_halflives: list[float] = field(default_factory=lambda: [0.0, 250.0])   # 0: every day equal
    own_alphas: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0])   # the own-series fit's penalties
    ridge_columns: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32, 0])   # source columns the ridge reads (0: all)
    ridge_levels: bool = True  # and, where there are level features (features.levels), those alone: a candidate too
    centre: bool = True        # the ridge (no intercept) and own-series fit forecast deviations from their fitting rows' means; constants are the prior's
    fallback: bool = True      # the prior alone where it scores on the evidence and the blend, fit on other parts of it, does not beat it

    def validate(self, s: str) -> None:
        _require(self.max_weight > 0.0, f"{s}.max_weight", "must be positive")
        _require(len(self.ridge_columns) > 0 and all(c >= 0 for c in self.ridge_columns),
                 f"{s}.ridge_columns", "needs at least one count, each >= 0 (0: every input)")
        _require(len(self.ridge_alphas) > 0 and all(a > 0.0 for a in self.ridge_alphas), f"{s}.ridge_alphas",
                 "needs at least one penalty, each positive")
        _require(len(self.ridge_halflives) > 0 and all(h == 0.0 or h >= 5.0 for h in self.ridge_halflives),
                 f"{s}.ridge_halflives", "needs at least one half-life, each 0 (equal weights) or >= 5 days")
        _require(len(self.own_alphas) > 0 and all(a > 0.0 for a in self.own_alphas), f"{s}.own_alphas",
                 "needs at least one penalty, each positive")


@dataclass
class SubmitConfig:
    refit: bool = True
    refit_from: Literal["final", "scratch"] = "final"   # go on from the final model, or train anew
    refit_epochs: int = 0       # 0: the best epoch validation chose (fine-tuning's from final, training's from scratch)

    def validate(self, s: str) -> None:
        _require(self.refit_epochs >= 0, f"{s}.refit_epochs", "must be >= 0")


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "synthetic": SyntheticConfig,
    "features": FeaturesConfig,
    "prescreen": PrescreenConfig,
    "walkforward": WalkForwardConfig,
    "scale": ScaleConfig,
    "windows": WindowsConfig,
    "train": TrainConfig,
    "prune": PruneConfig,
    "finetune": FinetuneConfig,
    "blend": BlendConfig,
    "evaluate": EvaluateConfig,
    "submit": SubmitConfig,
}


def read_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section {unknown[0]!r} (allowed: {', '.join(SECTIONS)})")
    return raw


def load(section: str, path: str | Path = "params.yaml"):
    """One section of params.yaml; the whole file is validated, so a typo anywhere stops the
    first stage that runs rather than the one that reads it."""
    return load_all(path)[section]


def load_all(path: str | Path = "params.yaml") -> dict[str, Any]:
    raw = read_params(path)
    try:
        return {name: build(cls, raw.get(name), name) for name, cls in SECTIONS.items()}
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def params_hash(*configs: Any) -> str:
    """Stable hash of config dataclasses, recorded in checkpoints."""
    payload = json.dumps([dataclasses.asdict(c) for c in configs], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
