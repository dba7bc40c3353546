"""Fit the served blend of the transformer, a ridge, the constant-rank prior and the own-series
component (see `spreadcast.evaluation.blend`), and the ridges, own-series fits and prior
it serves with.

The ridge's inputs (the first `blend.ridge_columns` source columns in the screen's order, 0: every
model input; or with `blend.ridge_levels` every level feature alone, screened or not, where the
market has any; fewer than all only where the folds show more than one standard error of gain),
penalty and recency half-life, and the own-series fit's penalty, are chosen by
walk-forward folds over the training days (`spreadcast.evaluation.walkforward`; each fold's
ridge reads the inputs the prescreen chose on that fold's fitting days). The blend's weights are
fit on the folds' forecasts and the validation days' (`blend.fit_on`; the transformer's on the
folds the train stage forecast, `train.evidence_folds`, and on the validation days), one set
for every lag (`blend.pool_lags`) or one per lag; with `blend.fallback` (the default) the prior
alone where the evidence backs it over the blend fit on other parts of it
(`spreadcast.evaluation.blend.fallback`). With `blend.centre` (the default) the ridge
forecasts without its intercept and the own-series fit less each target's mean over its fitting
rows (`own_*_offset`), in the folds' choices as in the served forecast: each target's constant
ranking is the prior's alone, and the ridge baseline keeps its intercept. Writes `blend.json`
(weights; every fold's and the validation days' Sharpe and mean IC per component, overall and
per lag; each candidate's fold scores; the inputs the ridge and the own-series fit read), the
ridge and own-series fits on training rows (`ridge_train_*`, `own_train_coef`, for the holdout
evaluation) and on every published label (`ridge_all_*`, `own_all_coef`, for the submission and
serving), the ridge baseline on every model input (`ridge_baseline_*`, training rows, its penalty
and half-life chosen on the same folds: what `evaluate` compares with; `ridge_baseline_all_*`,
every published label: what `submit` compares with), and the prior's sums
over the label rows complete by the last training day (`prior_*`), which serving keeps updating.

usage: python stages/blend.py --data artifacts/data --tensors artifacts/tensors --train artifacts/train \
           --models artifacts/finetune --out artifacts/blend
"""
from pathlib import Path

import numpy as np

from spreadcast import cli, config
from spreadcast.evaluation import blend, metric, own
from spreadcast.evaluation.baseline import predict_ridge
from spreadcast.evaluation.walkforward import (choose_columns, embargo_of, fit_ridge, folds, leading_columns,
                                               select_ridge)
from spreadcast.features import windows
from spreadcast.errors import DataError
from spreadcast.io import atomic_dir, load_array, read_json, save_arrays, write_json
from spreadcast.serve.predictor import load_heads, predict_rows


def main() -> None:
    p = cli.parser(__doc__)
    p.add_input("--data")
    p.add_input("--tensors")
    p.add_input("--train", help="the train stage's heads (their walk-forward fold forecasts, if any)")
    p.add_input("--models")
    p.add_output("--out")
    args = p.parse_args()
    cfg = config.load("blend", args.params)
    lags = config.load("data", args.params).lags
    walk = config.load("walkforward", args.params)
    n_folds, weigh = walk.folds, walk.weigh

    tensors = windows.load(args.tensors)
    splits = tensors.splits
    delay = embargo_of(tensors.target_lags)
    every, y, names = tensors.features.numpy(), tensors.labels.numpy(), tensors.feature_names
    fold_columns = tensors.fold_columns(n_folds)
    intercept = not cfg.centre
    counts = ridge_candidates(tensors, cfg.ridge_columns, cfg.ridge_levels)
    options, count, margin = ridge_options(tensors, every, y, n_folds, delay, cfg.ridge_alphas, cfg.ridge_halflives,
                                           counts, intercept, weigh)
    choice = options[count]
    # the baseline a user computes in a minute: the ridge on every model input, with its intercept
    baseline = options[0] if intercept else select_ridge(every, y, tensors.raw_labels, splits.train, cfg.ridge_alphas,
                                                         cfg.ridge_halflives, n_folds, delay, fold_columns,
                                                         weigh=weigh)
    print(f"blend: ridge chosen on {n_folds} walk-forward folds of the training days (each on its own "
          f"screen's inputs): {describe(count, len(tensors.level_inputs))}, alpha {choice.alpha:g}, half-life "
          f"{choice.halflife:g} days (0 = equal weights); fold means by candidate: "
          + ", ".join(f"{c or 'all'} {options[c].mean_sharpe:+.3f}" for c in counts)
          + f" (fewer than all only by more than {margin:.3f})")
    fold_columns = [candidate_columns(tensors, c, count) for c in fold_columns]
    inputs = candidate_columns(tensors, tensors.model_columns, count)
    x = every[:, inputs]
    w_train, b_train = fit_ridge(x, y, choice.alpha, splits.train, choice.halflife, intercept)
    published = np.flatnonzero(np.isfinite(tensors.raw_labels).any(axis=1))
    w_all, b_all = fit_ridge(x, y, choice.alpha, published, choice.halflife, intercept)
    w_base, b_base = fit_ridge(every[:, tensors.model_columns], y, baseline.alpha, splits.train, baseline.halflife)
    w_base_all, b_base_all = fit_ridge(every[:, tensors.model_columns], y, baseline.alpha, published, baseline.halflife)

    z = own.tensor_inputs(tensors)
    own_choice = own.select(z, tensors.raw_labels, tensors.target_lags, splits.train, cfg.own_alphas, n_folds, delay,
                            cfg.centre, weigh)
    print(f"blend: own-series fit ({z.shape[2]} inputs per target) chosen on the same folds: "
          f"alpha {own_choice.alpha:g}" + ("; centred" if cfg.centre else ""))
    own_train = own.fit(z[splits.train], tensors.raw_labels[splits.train], tensors.target_lags, own_choice.alpha)
    own_all = own.fit(z[published], tensors.raw_labels[published], tensors.target_lags, own_choice.alpha)
    own_train_offset = own.offset(z[splits.train], own_train, cfg.centre)
    own_all_offset = own.offset(z[published], own_all, cfg.centre)

    val = splits.val
    prior = blend.prior_series(tensors.raw_labels, delay)
    components = {"transformer": predict_rows(load_heads(args.models, lags), tensors, val),
                  "ridge": predict_ridge(w_train, b_train, x[val]),
                  "prior": prior[val],
                  "own": own.predict(z[val], own_train, own_train_offset)}
    # out-of-sample evidence: every walk-forward fold (the ridge, own-series fit and prior, each
    # fit before the fold), then the validation days (all four components)
    transformer = transformer_evidence(Path(args.train), lags, tensors, n_folds)
    if transformer:
        print(f"blend: the transformer's forecasts of fold {', '.join(str(k + 1) for k in sorted(transformer))} "
              f"(train.evidence_folds) join the validation days' as evidence for its weight")
    evidence = fold_forecasts(tensors, every, y, z, prior, fold_columns, choice, own_choice.alpha, n_folds, delay,
                              transformer, centre=cfg.centre)
    evidence.append(("validation", val, components))
    used = evidence if cfg.fit_on == "walk_forward" else evidence[-1:]
    fitted = blend.fit({name: np.vstack([c[name] for _, _, c in used]) for name in blend.COMPONENTS},
                       np.vstack([tensors.raw_labels[r] for _, r, _ in used]), tensors.target_lags, cfg.max_weight,
                       pool_lags=cfg.pool_lags)
    gate = None
    if cfg.fallback and len(used) > 1:
        gate = blend.fallback([(c, tensors.raw_labels[r]) for _, r, c in used], tensors.target_lags, cfg.max_weight,
                              cfg.pool_lags)
        if gate["prior_alone"]:
            fitted = blend.prior_alone(tensors.target_lags, cfg.max_weight)
        print(f"blend: over the {gate['days']} days of evidence, each part forecast by weights fit on the others: "
              f"blend {gate['blend_sharpe']}, prior alone {gate['prior_sharpe']} (a fallback from "
              f"{gate['prior_floor']}, the blend kept only above it by {gate['margin']}): "
              + ("the prior alone is served" if gate["prior_alone"] else "the blend is served"))
    report = [fold_report(tensors, *entry, fitted) for entry in evidence]
    fit_days = int(sum(r.size for _, r, _ in used))
    sharpe = report[-1]["sharpe"]

    # the prior's sums over the label rows complete by the last training day
    upto_date = read_json(Path(args.data) / "registry.json")["train_dates"][1] - delay
    rows = np.flatnonzero(tensors.date_ids <= upto_date)
    ranks = blend.daily_ranks(tensors.raw_labels[rows])
    with atomic_dir(args.out) as tmp:
        save_arrays(tmp, ridge_train_weights=w_train, ridge_train_intercept=b_train,
                    ridge_all_weights=w_all, ridge_all_intercept=b_all,
                    ridge_baseline_weights=w_base, ridge_baseline_intercept=b_base,
                    ridge_baseline_all_weights=w_base_all, ridge_baseline_all_intercept=b_base_all,
                    own_train_coef=own_train, own_all_coef=own_all,
                    own_train_offset=own_train_offset, own_all_offset=own_all_offset,
                    prior_sum=np.nansum(ranks, axis=0), prior_count=np.isfinite(ranks).sum(axis=0).astype(np.float64))
        write_json(tmp / "blend.json", {
            "enabled": cfg.enabled, "blend": fitted.to_dict(),
            "target_lags": tensors.target_lags.tolist(),
            "prior": {"upto": int(upto_date), "delay": delay},
            "fit_on": cfg.fit_on, "pool_lags": cfg.pool_lags, "centre": cfg.centre, "fit_days": fit_days,
            "fallback": gate,
            "ridge": {**choice.to_dict(), "columns": count, "columns_margin": margin,
                      "by_columns": [{"columns": c, "alpha": options[c].alpha, "halflife": options[c].halflife,
                                      "mean_sharpe": options[c].mean_sharpe} for c in counts]},
            "ridge_inputs": [names[j] for j in inputs],
            "ridge_baseline": baseline.to_dict(),
            "own": {**own_choice.to_dict(), "features": tensors.own},
            "fit_sharpe": sharpe, "walk_forward": report})
    weights = "  ".join(f"lag {k}: " + " ".join(f"{n} {w:.3f}" for n, w in zip(blend.COMPONENTS, v))
                        for k, v in fitted.weights.items())
    where = (f"{n_folds} walk-forward folds and the validation days" if cfg.fit_on == "walk_forward"
             else "the validation days")
    print(f"blend: {'on' if cfg.enabled else 'off'}; weights fit on {fit_days} days of {where}  {weights}")
    for entry in report:
        print(f"blend: {entry['fold']} ({entry['days']} days from {entry['dates'][0]}) Sharpe  "
              + "  ".join(f"{n} {v:+.3f}" for n, v in entry["sharpe"].items()))


LEVELS = "levels"   # the ridge candidate that reads every level feature alone (`blend.ridge_levels`)


def candidate_columns(tensors, columns: np.ndarray, candidate: int | str) -> np.ndarray:
    """The inputs of one ridge candidate among `columns` (a fold's screened inputs, or the model's):
    its first `candidate` source columns (0: all of them), or with `LEVELS` every level feature
    the tensors carry, the same on every fold (which of them are usable reads no label)."""
    if candidate == LEVELS:
        return tensors.columns_of(tensors.level_inputs)
    return leading_columns(columns, tensors.feature_names, candidate)


def ridge_candidates(tensors, counts: list[int], levels: bool) -> list[int | str]:
    """The ridge's candidate inputs: the counts of source columns (`blend.ridge_columns`), and with
    `levels` (`blend.ridge_levels`) the level features alone where the tensors carry any."""
    return [*counts, LEVELS] if levels and tensors.level_inputs else list(counts)


def describe(candidate: int | str, n_levels: int) -> str:
    """A ridge candidate in words."""
    if candidate == LEVELS:
        return f"the {n_levels} level features alone"
    return f"the first {candidate} source columns" if candidate else "every input"


def ridge_options(tensors, every, y, n_folds, delay, alphas, halflives, counts, intercept: bool,
                  weigh: str = "equal"):
    """The ridge chosen on the walk-forward folds (`select_ridge`, each fold reading its own
    screen's inputs, the folds weighed by `weigh`) for each candidate in `counts`
    (`candidate_columns`) and for 0 (every input), and the candidate `choose_columns` takes with
    its margin: (options, count, margin)."""
    fold_columns = tensors.fold_columns(n_folds)
    options = {count: select_ridge(every, y, tensors.raw_labels, tensors.splits.train, alphas, halflives, n_folds,
                                   delay, [candidate_columns(tensors, c, count) for c in fold_columns], intercept,
                                   weigh)
               for count in dict.fromkeys([*counts, 0])}
    count, margin = choose_columns(options, counts, folds(tensors.splits.train, n_folds, delay))
    return options, count, margin


def fold_forecasts(tensors, every, y, z, prior, fold_columns, ridge, own_alpha, n_folds, delay,
                   transformer: dict[int, np.ndarray] | None = None, *, centre: bool):
    """(name, test rows, components) of each walk-forward fold over the training days: the ridge on the
    inputs screened on the fold's fitting days and the own-series fit, both fit on those days with
    the chosen settings, and the prior. The transformer's forecasts of fold k are `transformer[k]`
    (0 the oldest) where given, from its configuration trained on the fold's fitting days; on
    the other folds its component is zero (its weight rests on the folds it forecast and the
    validation days). `centre`: the ridge without its intercept and the own-series fit centred on
    the fold's fitting days (`blend.centre`)."""
    transformer = transformer or {}
    out = []
    raw, lags = tensors.raw_labels, tensors.target_lags
    for k, (fit_rows, test_rows) in enumerate(folds(tensors.splits.train, n_folds, delay)):
        xk = every[:, fold_columns[k]]
        w, b = fit_ridge(xk, y, ridge.alpha, fit_rows, ridge.halflife, not centre)
        coef = own.fit(z[fit_rows], raw[fit_rows], lags, own_alpha)
        forecast = transformer.get(k, np.zeros((test_rows.size, raw.shape[1])))
        out.append((f"fold {k + 1}", test_rows, {"transformer": forecast,
                                "ridge": predict_ridge(w, b, xk[test_rows]), "prior": prior[test_rows],
                                "own": own.predict(z[test_rows], coef, own.offset(z[fit_rows], coef, centre))}))
    return out


def transformer_evidence(train: Path, lags: list[int], tensors, n_folds: int) -> dict[int, np.ndarray]:
    """{fold k (0 the oldest): the transformer's forecasts of the fold's days, every target} for
    each fold that every lag head forecast (`train.evidence_folds`, in `train/lagK/evidence`)."""
    fold_rows = [test for _, test in folds(tensors.splits.train, n_folds, embargo_of(tensors.target_lags))]
    found: dict[int, np.ndarray] = {}
    counts = {}
    for lag in lags:
        folder = train / f"lag{lag}" / "evidence"
        for k, rows in enumerate(fold_rows):
            dates, forecast = folder / f"fold{k + 1}_dates.npy", folder / f"fold{k + 1}_forecast.npy"
            if not dates.exists() and not forecast.exists():
                continue
            if not (dates.exists() and forecast.exists()):
                raise DataError(f"{dates if not dates.exists() else forecast}: missing beside its pair; "
                                f"rerun the train stage")
            if not np.array_equal(load_array(dates), tensors.date_ids[rows]):
                raise DataError(f"{dates}: the dates differ from walk-forward fold {k + 1}'s of these tensors; "
                                f"rerun the train stage")
            cols = tensors.head(lag)
            values = load_array(forecast)
            if values.shape != (rows.size, cols.size):
                raise DataError(f"{forecast}: shape {values.shape}, expected {(rows.size, cols.size)} "
                                f"(fold {k + 1}'s days x lag {lag}'s targets)")
            found.setdefault(k, np.zeros((rows.size, tensors.target_lags.size)))[:, cols] = values
            counts[k] = counts.get(k, 0) + 1
    partial = sorted(k + 1 for k, c in counts.items() if c < len(lags))
    if partial:
        raise DataError(f"{train}: fold {partial[0]}'s forecasts are missing for some lag heads; rerun the train stage")
    return found


def fold_report(tensors, name, rows, components, fitted) -> dict:
    """Sharpe of each component's forecast on the rows and of the blend, overall and per lag,
    with the mean daily IC per lag (the transformer where it forecast the rows)."""
    raw, lags = tensors.raw_labels[rows], tensors.target_lags
    scored = {n: c for n, c in components.items() if n != "transformer" or np.any(c)}
    scored["blend"] = fitted.combine(components, lags)
    per_lag = {}
    for lag in np.unique(lags):
        cols = lags == lag
        per_lag[str(int(lag))] = {n: {k: round(v, 4) for k, v in metric.summary(raw[:, cols], c[:, cols]).items()
                                      if k in ("ic_mean", "sharpe")} for n, c in scored.items()}
    return {"fold": name, "days": int(rows.size),
            "dates": [int(tensors.date_ids[rows[0]]), int(tensors.date_ids[rows[-1]])],
            "sharpe": {n: round(metric.summary(raw, c)["sharpe"], 4) for n, c in scored.items()},
            "per_lag": per_lag}


if __name__ == "__main__":
    cli.run("blend", main)
