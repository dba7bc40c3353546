"""Inference with the trained lag heads: the one path from windows to a submitted row.

`forecast` turns windows of model inputs (the scaled features in the exported tensors' order)
into every target's forecast; `evaluate`, `submit`, the replay and `predict()` all call it, the
first two through `predict_rows` over the exported tensors, serving on its one window a day.

The metric ranks the targets of all lags together each day, and longer lags move more. Each
head predicts its targets in units of the target's training-fold RMS (the standardised scale),
and the heads are combined on that scale: every target's forecast is comparable whatever its
lag. On the synthetic market this ranks better than forecasts on the labels' own scale, even
for the oracle's exact expectations (tests/test_metric.py).
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spreadcast.evaluation import own
from spreadcast.evaluation.blend import Blend
from spreadcast.features.windows import Tensors
from spreadcast.io import load_array, read_json
from spreadcast.model import checkpoint
from spreadcast.model.net import SpreadTransformer
from spreadcast.model.stacked import StackedHeads, stackable


# Below this many multiply-adds of transformer blocks per served window (all heads), one thread
# serves a day faster than several: the matrices are too small for intra-op parallelism to pay
# for its synchronisation (default size: 8M, 4.7 against 5.6 ms on 2 cores; full size: 900M).
ONE_THREAD_BELOW = 50_000_000


@dataclass
class Head:
    lag: int
    model: SpreadTransformer
    features: list[str]
    targets: list[str]


def load_head(folder: str | Path, lag: int) -> Head:
    """The model saved as `folder/model`, in evaluation mode."""
    state, meta = checkpoint.load(Path(folder) / "model")
    model = checkpoint.build_model(meta)
    model.load_state_dict(state["model"])
    model.eval()
    return Head(lag=lag, model=model, features=meta["features"], targets=meta["targets"])


def load_heads(folder: str | Path, lags: list[int]) -> list[Head]:
    """Load the final model of every lag from `folder/lag{k}/model`."""
    return [load_head(Path(folder) / f"lag{lag}", lag) for lag in lags]


def served_folder(artifacts: str | Path, lag: int) -> Path:
    """The folder of the model a lag is served with: the one refit on every labelled day
    (`submission/models`, written by `submit.refit`) when there is one, the fine-tuned one
    otherwise. The submission, the bundle and `predict()` all serve this model."""
    refit = Path(artifacts) / "submission" / "models" / f"lag{lag}"
    return refit if (refit / "model.pt").is_file() else Path(artifacts) / "finetune" / f"lag{lag}"


@dataclass
class BlendParts:
    """What the blend needs beside the heads: its weights, the ridge, the own-series fit and the
    prior's start."""

    blend: Blend
    target_lags: np.ndarray        # (T,) lag of each target, registry order
    ridge_inputs: list[str]        # the features the ridge reads (the model inputs)
    ridge_weights: np.ndarray      # (F x T) on them
    ridge_intercept: np.ndarray    # (T,)
    own_features: list[list]       # each target's own features, a name or None per slot
    own_coef: np.ndarray           # (T x slots)
    own_offset: np.ndarray         # (T,) subtracted from the own-series forecast (zeros unless centred)
    prior_sum: np.ndarray          # (T,) sum of daily ranks of the label rows up to prior_upto
    prior_count: np.ndarray        # (T,)
    prior_upto: int                # last label date in the sums
    delay: int                     # a label row enters the prior this many days after its date


def load_blend(folder: str | Path, ridge: str = "all") -> BlendParts | None:
    """The blend stage's output (`ridge`: "train" for evaluation, "all" for submission and
    serving: the ridge and the own-series fit of those rows), or None where the blend is off."""
    folder = Path(folder)
    meta = read_json(folder / "blend.json")
    if not meta["enabled"]:
        return None
    return BlendParts(blend=Blend.from_dict(meta["blend"]), target_lags=np.asarray(meta["target_lags"]),
                      ridge_inputs=meta["ridge_inputs"],
                      ridge_weights=load_array(folder / f"ridge_{ridge}_weights.npy"),
                      ridge_intercept=load_array(folder / f"ridge_{ridge}_intercept.npy"),
                      own_features=meta["own"]["features"], own_coef=load_array(folder / f"own_{ridge}_coef.npy"),
                      own_offset=load_array(folder / f"own_{ridge}_offset.npy"),
                      prior_sum=load_array(folder / "prior_sum.npy"), prior_count=load_array(folder / "prior_count.npy"),
                      prior_upto=int(meta["prior"]["upto"]), delay=int(meta["prior"]["delay"]))


class Forecaster:
    """Every lag head over one set of model inputs, and the blend; forecasts in `targets` order.

    `features` names the columns of the inputs it is given (the scaler's and exported tensors'
    order); each head reads its own features by name, and writes its own targets. With `blend`,
    the forecast is the blend of the heads' forecasts, the ridge and the own-series fit on the
    window's last day, and the prior given with each call (see `evaluation.blend`).
    """

    def __init__(self, heads: list[Head], features: list[str], targets: list[str],
                 blend: BlendParts | None = None):
        self.blend = blend
        index = {f: i for i, f in enumerate(features)}
        position = {t: j for j, t in enumerate(targets)}

        def columns(names: list[str], reader: str) -> np.ndarray:
            missing = [f for f in names if f not in index]
            if missing:
                raise checkpoint.CheckpointError(f"{reader} reads feature {missing[0]!r}, "
                                                 f"which the model inputs do not have")
            return np.array([index[f] for f in names], dtype=np.int64)

        self.heads, self.targets = heads, list(targets)
        self.columns, self.outputs = [], []
        for head in heads:
            cols = columns(head.features, f"lag {head.lag} model")
            unknown = [t for t in head.targets if t not in position]
            if unknown:
                raise checkpoint.CheckpointError(f"lag {head.lag} model forecasts target {unknown[0]!r}, "
                                                 f"which is not in the registry")
            self.columns.append(torch.from_numpy(cols))
            self.outputs.append(np.array([position[t] for t in head.targets]))

        if blend is not None:
            self.ridge_columns = columns(blend.ridge_inputs, "the blend's ridge")
            self.own_columns = own.columns(blend.own_features, features)
        # heads of one shape run as one module (one pass of each layer for all of them)
        models = [head.model for head in heads]
        self.stacked = StackedHeads(models) if stackable(models) else None
        self.head_columns = list(self.columns)
        if self.stacked is not None:
            self.columns = [torch.stack(self.columns)]                   # (H, F)
            self.modules = [self.stacked]
            self.steps = [_FromDayTerms(self.stacked)]
        else:
            self.modules = models
            self.steps = [_FromDayTerms(model) for model in models]
        self.windows: list[_DayTerms] = []      # serving: each module's day terms of the window (`reset`)
        # serve from day terms where a day's work is mostly projecting the window: 2F x C
        # multiply-adds per day of it, against about 8 C^2 per day and block, which both paths do
        cfgs = [head.model.cfg for head in heads]
        self.streaming = sum(2 * c.n_features * c.d_model for c in cfgs) >= sum(8 * c.d_model ** 2 * c.n_layers
                                                                               for c in cfgs)
        self.threads = 1 if sum(8 * c.d_model ** 2 * c.n_layers * c.history for c in cfgs) < ONE_THREAD_BELOW else None

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, m: torch.Tensor, prior: np.ndarray | None = None) -> np.ndarray:
        """Forecasts (B x targets) for windows x, m (B x L x features) and, with a blend, the
        prior (B x targets) known on each window's last day."""
        out = np.full((x.shape[0], len(self.targets)), np.nan)
        for i, (module, cols) in enumerate(zip(self.modules, self.columns)):
            self._scatter(out, module(*self._inputs(x, m, cols)), i)
        return self._blended(out, x[:, -1].double().numpy(), prior)

    def _inputs(self, x: torch.Tensor, m: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A module's inputs from windows (B, L, features): (B, L, F), or (H, B, L, F) stacked."""
        if self.stacked is None:
            return x[:, :, cols], m[:, :, cols]
        return x[:, :, cols].permute(2, 0, 1, 3), m[:, :, cols].permute(2, 0, 1, 3)

    def _scatter(self, out: np.ndarray, result, i: int) -> None:
        """Write module i's forecasts into `out` (B x targets): head i's (its `forward`'s pair),
        or, stacked, every head's (H, B, T), the padded targets dropped."""
        if self.stacked is None:
            out[:, self.outputs[i]] = result[0].float().numpy()
            return
        result = result.float().numpy()
        for h, outputs in enumerate(self.outputs):
            out[:, outputs] = result[h, :, :len(outputs)]

    def _blended(self, heads: np.ndarray, last: np.ndarray, prior: np.ndarray | None) -> np.ndarray:
        """The heads' forecasts (B x targets), or their blend with the ridge and the own-series fit
        on each window's last day `last` (B x features) and the prior."""
        if self.blend is None:
            return heads
        ridge = last[:, self.ridge_columns] @ self.blend.ridge_weights + self.blend.ridge_intercept
        mine = own.predict(own.inputs(last, self.own_columns), self.blend.own_coef, self.blend.own_offset)
        return self.blend.blend.combine({"transformer": heads, "ridge": ridge, "prior": prior, "own": mine},
                                        self.blend.target_lags)

    # -- serving: one window a day ------------------------------------------------------------
    def _day_terms(self, i: int, x: torch.Tensor, m: torch.Tensor):
        """Module i's day terms for days x, m ((L x) features): one head's, or every head's,
        head axis first."""
        xs, ms = x[..., self.columns[i]], m[..., self.columns[i]]     # stacked: (L, H, F) or (H, F)
        if self.stacked is None:
            return self.heads[i].model.day_terms(xs, ms)
        if xs.dim() == 3:
            xs, ms = xs.transpose(0, 1), ms.transpose(0, 1)
        return self.stacked.day_terms(xs, ms)

    @torch.no_grad()
    def reset(self, x: np.ndarray, m: np.ndarray) -> None:
        """Serve the window x, m (L x features): each module's day terms of its days (where
        serving from day terms)."""
        if not self.streaming:
            return
        x, m = torch.from_numpy(np.asarray(x, dtype=np.float32)), torch.from_numpy(np.asarray(m, dtype=np.float32))
        axis = 0 if self.stacked is None else 1
        self.windows = [_DayTerms(*self._day_terms(i, x, m), axis=axis) for i in range(len(self.columns))]

    @torch.no_grad()
    def freeze(self, x: np.ndarray, m: np.ndarray) -> bool:
        """Start serving the window x, m (L x features) on one of two equal paths.

        The paths: the full window (`forward`), or the window's day terms (`from_day_terms`, a
        day's terms computed once when it arrives). The day terms pay where projecting the
        window's inputs is at least the blocks' work (wide inputs: no day is projected again),
        the full window elsewhere (fewer calls); `streaming` says which. The path is traced and
        frozen per module (each head, or the stacked heads), checked against every head's eager
        forward on x, m and kept only if they agree to 1e-5. Returns whether every module was
        frozen."""
        self.reset(x, m)
        xt, mt = (torch.from_numpy(np.asarray(a, dtype=np.float32))[None] for a in (x, m))
        want = [head.model(xt[:, :, cols], mt[:, :, cols])[0] for head, cols in zip(self.heads, self.head_columns)]
        frozen = []
        for i, cols in enumerate(self.columns):
            if self.stacked is None:
                agrees = lambda got, i=i: torch.allclose(got[0], want[i], rtol=1e-5, atol=1e-5)  # noqa: E731
            else:
                agrees = lambda got: all(torch.allclose(got[h, :, :w.shape[1]], w, rtol=1e-5, atol=1e-5)  # noqa: E731
                                         for h, w in enumerate(want))
            if self.streaming:
                frozen.append(_traced(self.steps[i], self.windows[i].batch(), agrees))
                self.steps[i] = frozen[-1] or self.steps[i]
            else:
                frozen.append(_traced(self.modules[i], self._inputs(xt, mt, cols), agrees))
                self.modules[i] = frozen[-1] or self.modules[i]
        return all(t is not None for t in frozen)

    @torch.no_grad()
    def push(self, x: np.ndarray, m: np.ndarray) -> None:
        """Slide every module's window of day terms by the day with model inputs x, m (features,)."""
        if not self.streaming:
            return
        x, m = torch.from_numpy(np.asarray(x, dtype=np.float32)), torch.from_numpy(np.asarray(m, dtype=np.float32))
        for i, terms in enumerate(self.windows):
            terms.push(*self._day_terms(i, x, m))

    def state(self) -> list:
        return [terms.copy() for terms in self.windows]

    def restore(self, state: list) -> None:
        self.windows = [terms.copy() for terms in state]

    @torch.no_grad()
    def forecast_window(self, x: np.ndarray, m: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
        """Every target's forecast for the window served, x, m (L x features): from the kept day
        terms (`reset`, `push`) where that path is the faster, else from the window itself."""
        out = np.full((1, len(self.targets)), np.nan)
        with _threads(self.threads):
            if self.streaming:
                for i, (step, terms) in enumerate(zip(self.steps, self.windows)):
                    self._scatter(out, step(*terms.batch()), i)
            else:
                xt, mt = (torch.from_numpy(np.asarray(a, dtype=np.float32))[None] for a in (x, m))
                for i, (module, cols) in enumerate(zip(self.modules, self.columns)):
                    self._scatter(out, module(*self._inputs(xt, mt, cols)), i)
        return self._blended(out, np.asarray(x[-1:], dtype=np.float64), None if prior is None else prior[None])[0]


@contextlib.contextmanager
def _threads(n: int | None):
    """Torch's intra-op threads set to `n` (None: unchanged) inside the block, restored after."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _traced(module: torch.nn.Module, inputs: tuple, agrees) -> torch.nn.Module | None:
    """`module` traced and frozen for `inputs`, if `agrees` with what it returns."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(module, inputs,
                                                                                        check_trace=False)))
            return traced if agrees(traced(*inputs)) else None
    except Exception:      # tracing is an optimisation: the eager model always works
        return None


class _FromDayTerms(torch.nn.Module):
    """A module's forecast from its window's day terms (`from_day_terms` of a head or of the
    stacked heads)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.train(model.training)         # freezing needs evaluation mode all through

    def forward(self, projected: torch.Tensor, linear: torch.Tensor):
        return self.model.from_day_terms(projected, linear)


class _DayTerms:
    """A module's day terms of the window's days, oldest first, along `axis` (1 for stacked
    heads, whose terms lead with the head axis): a ring kept in window order."""

    def __init__(self, projected: torch.Tensor, linear: torch.Tensor, axis: int = 0):
        self.projected, self.linear = projected.contiguous(), linear.contiguous()   # (L, C), (L, K, 2T)
        self.axis = axis

    def push(self, projected: torch.Tensor, linear: torch.Tensor) -> None:
        self.projected, self.linear = (torch.cat([old.narrow(self.axis, 1, old.shape[self.axis] - 1),
                                                  new.unsqueeze(self.axis)], dim=self.axis)
                                       for old, new in ((self.projected, projected), (self.linear, linear)))

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The window as one batch: (1, L, ...), or (H, 1, L, ...) stacked."""
        return self.projected.unsqueeze(self.axis), self.linear.unsqueeze(self.axis)

    def copy(self) -> "_DayTerms":
        return _DayTerms(self.projected, self.linear, self.axis)   # pushes build new tensors: sharing is safe


def predict_rows(heads: list[Head], tensors: Tensors, rows: np.ndarray, batch_size: int = 256,
                 blend: BlendParts | None = None, prior: np.ndarray | None = None) -> np.ndarray:
    """Forecasts (rows x all targets, registry order): the heads' (standardised scale), or
    their blend with `prior` (rows x targets) given."""
    for head in heads:
        expected = [tensors.target_names[j] for j in tensors.head(head.lag)]
        if head.targets != expected:
            raise checkpoint.CheckpointError(
                f"lag {head.lag} model targets differ from the exported tensors' lag-{head.lag} targets")
    forecaster = Forecaster(heads, tensors.feature_names, tensors.target_names, blend)
    windows = tensors.windows(np.arange(len(tensors.target_names)))
    out = [np.empty((0, len(tensors.target_names)))]
    for start in range(0, len(rows), batch_size):
        x, m, _ = windows.batch(rows[start:start + batch_size])
        out.append(forecaster(x, m, None if prior is None else prior[start:start + batch_size]))
    return np.concatenate(out)
