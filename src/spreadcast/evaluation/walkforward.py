"""Walk-forward validation: choices scored on expanding-window folds of the training days.

    rows (training days, oldest first):  [ ........ fit ........ ] embargo [ fold k ]

The last `n_folds` equal blocks of the rows are the test folds; each is forecast by a fit on
every row before it, less an embargo (>= max lag + 1 days, so no label of a fit row reaches into
the fold). A choice is scored by its mean Sharpe over the folds, never on the days it is then
judged on (validation, holdout). The mean weighs the folds alike, or each by its fitting days
(`weigh: fit_days`, `fold_weights`): with three folds the first fold's fit has a third of the
rows the last fold's has and a quarter of those the served fit has, and a richer model needs
the rows to pay.

`select_ridge` chooses the ridge's penalty and the half-life of its sample weights (recent days
count more: what was true early may have turned) this way; the candidates come from
`params.yaml`, the choice from the data.

A ridge fit without its `intercept` forecasts from its inputs' deviations from their (weighted)
means over the fitting rows alone: (x - mean x) W. Its coefficients are those of the ridge with
intercepts; what it drops is each target's mean label over the fitting rows, a constant ranking
of the targets that the blend's prior estimates on every published label.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spreadcast.errors import SplitError
from spreadcast.evaluation import metric


def embargo_of(lags) -> int:
    """Days from a label's date until every lag of it is published (max lag + 1): the gap
    between a fold and the rows fit before it, and when a label row enters the prior. The
    prescreen's `fold_inputs` and the blend's folds line up only if both use this."""
    return int(max(lags)) + 1


def folds(rows: np.ndarray, n_folds: int, embargo: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, test rows) of each fold, oldest fold first; the first fit has at least as many
    rows as a fold."""
    rows = np.asarray(rows)
    size = rows.size // (n_folds + 1)
    if n_folds < 1 or size < 10:
        raise SplitError(f"{rows.size} rows cannot make {n_folds} walk-forward folds of at least 10 days")
    out = []
    for k in range(n_folds):
        test = rows[rows.size - (n_folds - k) * size: rows.size - (n_folds - k - 1) * size]
        fit = rows[rows < test[0] - embargo]
        out.append((fit, test))
    return out


def recency_weights(rows: np.ndarray, halflife: float) -> np.ndarray:
    """Sample weights halving every `halflife` days back from the last row (0: all equal),
    scaled to mean 1."""
    if halflife <= 0:
        return np.ones(rows.size)
    w = 0.5 ** ((rows.max() - rows) / halflife)
    return w / w.mean()


WEIGHINGS = ("equal", "fit_days")


def fold_weights(splits: list[tuple[np.ndarray, np.ndarray]], weigh: str = "equal") -> np.ndarray:
    """Each fold's weight in a choice's mean score (summing to 1): alike (`equal`), or in
    proportion to its fitting rows (`fit_days`)."""
    if weigh not in WEIGHINGS:
        raise ValueError(f"weigh must be one of {', '.join(WEIGHINGS)}, not {weigh!r}")
    w = np.ones(len(splits)) if weigh == "equal" else np.array([fit.size for fit, _ in splits], dtype=np.float64)
    return w / w.sum()


def weighted_mean(values, weights: np.ndarray) -> float:
    """The mean of `values` under `weights`, a missing value (NaN) leaving its weight out; NaN
    when every value is missing."""
    v = np.asarray(values, dtype=np.float64)
    seen = np.isfinite(v)
    return float(np.sum(v[seen] * weights[seen]) / np.sum(weights[seen])) if seen.any() else float("nan")


class _RidgePath:
    """Weighted ridge fits for several penalties from one eigendecomposition.

    Penalty `alpha` means alpha * n on the centred Gram matrix, as `baseline.fit_ridge`; missing
    labels count as the (weighted) mean."""

    def __init__(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray):
        w = weights / weights.sum()
        self.n = len(x)
        self.x_mean = w @ x
        y0 = np.nan_to_num(y, nan=0.0)
        self.y_mean = w @ y0
        xc = (x - self.x_mean) * np.sqrt(w * self.n)[:, None]
        yc = (y0 - self.y_mean) * np.sqrt(w * self.n)[:, None]
        self.s, self.v = np.linalg.eigh(xc.T @ xc)
        self.vty = self.v.T @ (xc.T @ yc)

    def fit(self, alpha: float, intercept: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Weights (F x T) and the constant (T,) of the forecast x W + b: with `intercept`, b makes
        the forecast of the mean input the mean label; without, b = -mean(x) W (see the module)."""
        weights = self.v @ (self.vty / (np.maximum(self.s, 0.0) + alpha * self.n)[:, None])
        return weights, (self.y_mean if intercept else 0.0) - self.x_mean @ weights


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float, rows: np.ndarray, halflife: float,
              intercept: bool = True):
    """Weights (F x T) and constant (T,) of the ridge on rows of x, y with recency weights."""
    return _RidgePath(x[rows], y[rows], recency_weights(rows, halflife)).fit(alpha, intercept)


@dataclass
class RidgeChoice:
    alpha: float
    halflife: float
    scores: list[dict]        # every candidate: alpha, halflife, per-fold Sharpe, mean

    @property
    def mean_sharpe(self) -> float:
        """The chosen candidate's mean Sharpe over the folds."""
        return next(e["mean_sharpe"] for e in self.scores if (e["alpha"], e["halflife"]) == (self.alpha, self.halflife))

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "halflife": self.halflife, "candidates": self.scores}


def leading_columns(columns: np.ndarray, names: list[str], count: int) -> np.ndarray:
    """The entries of `columns` (indices into `names`, in the screen's order, best first) that
    belong to its first `count` source columns (a feature's name before `__`); 0: all of them."""
    if count == 0:
        return columns
    source = [names[j].split("__")[0] for j in columns]
    first = set(list(dict.fromkeys(source))[:count])
    return columns[np.array([s in first for s in source], dtype=bool)]


def select_ridge(x: np.ndarray, y: np.ndarray, labels: np.ndarray, rows: np.ndarray, alphas: list[float],
                 halflives: list[float], n_folds: int, embargo: int,
                 fold_columns: list[np.ndarray] | None = None, intercept: bool = True,
                 weigh: str = "equal") -> RidgeChoice:
    """The ridge penalty and recency half-life with the best mean walk-forward Sharpe over `rows`.

    `y` is what the ridge fits (the standardised labels), `labels` what the folds are scored on
    (the raw labels, ranked daily by the metric). `fold_columns` are the columns of x each fold
    reads (the inputs screened on its fitting days; default: all), so no fold is judged by a fit
    whose inputs were chosen on its own days. A tie goes to the larger penalty, then to the
    longer memory (the simpler fit). `intercept`: the folds score the ridge as it will forecast,
    with or without its intercept. `weigh`: the folds' weights in the mean (`fold_weights`)."""
    splits = folds(rows, n_folds, embargo)
    weights = fold_weights(splits, weigh)
    table = {(a, h): [] for a in alphas for h in halflives}
    for k, (fit_rows, test_rows) in enumerate(splits):
        xk = x if fold_columns is None else x[:, fold_columns[k]]
        for h in halflives:
            path = _RidgePath(xk[fit_rows], y[fit_rows], recency_weights(fit_rows, h))
            for a in alphas:
                w, b = path.fit(a, intercept)
                table[(a, h)].append(metric.summary(labels[test_rows], xk[test_rows] @ w + b)["sharpe"])
    scores = [{"alpha": a, "halflife": h, "fold_sharpe": [round(float(s), 4) for s in v],
               "mean_sharpe": round(weighted_mean(v, weights), 4)} for (a, h), v in table.items()]

    def key(entry):
        memory = float("inf") if entry["halflife"] <= 0 else entry["halflife"]
        mean = entry["mean_sharpe"] if np.isfinite(entry["mean_sharpe"]) else -np.inf
        return (mean, entry["alpha"], memory)

    best = max(scores, key=key)
    return RidgeChoice(alpha=float(best["alpha"]), halflife=float(best["halflife"]), scores=scores)


def choose_columns(options: dict, counts: list, splits: list) -> tuple[int | str, float]:
    """The ridge's inputs among the candidates `counts`: counts of source columns
    (`leading_columns`) and any other named candidate (the stage's `"levels"`), from each one's
    choice (`select_ridge`) on the folds `splits`: the one with the best mean Sharpe over the folds,
    except that reading fewer than every input (count 0, the baseline's inputs, where it is a
    candidate) must beat every input by more than one standard error of a Sharpe ratio over the
    folds' days, 1 / sqrt(days): a subset of columns is a bet the evidence has to carry. A tie
    goes to every input, then to the larger count, then to a named candidate.
    Returns the candidate and that margin."""
    margin = 1.0 / np.sqrt(sum(test.size for _, test in splits))
    best = max(counts, key=lambda c: (options[c].mean_sharpe, c == 0, c if isinstance(c, int) else -1))
    if 0 in counts and options[best].mean_sharpe - options[0].mean_sharpe <= margin:
        best = 0
    return best, float(margin)
