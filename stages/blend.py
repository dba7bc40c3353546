"""Fit the served blend of the transformer, a ridge, the constant-rank prior and the own-series
component, per lag, on the validation days (see `spreadcast.evaluation.blend`), and the ridges,
own-series fits and prior it serves with.

The ridge's penalty and recency half-life, and the own-series fit's penalty, are chosen by
walk-forward folds over the training days (`spreadcast.evaluation.walkforward`; every
candidate's fold scores go to `blend.json`). Writes `blend.json` (weights, each component's
validation Sharpe, the inputs the ridge and the own-series fit read), the ridge and own-series
fits on training rows (`ridge_train_*`, `own_train_coef`, for the holdout evaluation) and on
every published label (`ridge_all_*`, `own_all_coef`, for the submission and serving), and the
prior's sums over the label rows complete by the last training day (`prior_*`), which serving
keeps updating.

usage: python stages/blend.py --data artifacts/data --tensors artifacts/tensors --models artifacts/finetune --out artifacts/blend
"""
from pathlib import Path

import numpy as np

from spreadcast import cli, config
from spreadcast.evaluation import blend, metric, own
from spreadcast.evaluation.baseline import predict_ridge
from spreadcast.evaluation.walkforward import fit_ridge, select_ridge
from spreadcast.features import windows
from spreadcast.io import atomic_dir, read_json, save_arrays, write_json
from spreadcast.serve.predictor import load_heads, predict_rows


def main() -> None:
    p = cli.parser(__doc__)
    p.add_input("--data")
    p.add_input("--tensors")
    p.add_input("--models")
    p.add_output("--out")
    args = p.parse_args()
    cfg = config.load("blend", args.params)
    lags = config.load("data", args.params).lags

    tensors = windows.load(args.tensors)
    splits = tensors.splits
    delay = int(tensors.target_lags.max()) + 1
    x, y = tensors.features.numpy()[:, tensors.model_columns], tensors.labels.numpy()
    choice = select_ridge(x, y, tensors.raw_labels, splits.train, cfg.ridge_alphas, cfg.ridge_halflives,
                          cfg.folds, delay)
    print(f"blend: ridge chosen on {cfg.folds} walk-forward folds of the training days: "
          f"alpha {choice.alpha:g}, half-life {choice.halflife:g} days (0 = equal weights)")
    w_train, b_train = fit_ridge(x, y, choice.alpha, splits.train, choice.halflife)
    published = np.flatnonzero(np.isfinite(tensors.raw_labels).any(axis=1))
    w_all, b_all = fit_ridge(x, y, choice.alpha, published, choice.halflife)

    z = own.tensor_inputs(tensors)
    own_choice = own.select(z, tensors.raw_labels, tensors.target_lags, splits.train, cfg.own_alphas, cfg.folds, delay)
    print(f"blend: own-series fit ({z.shape[2]} inputs per target) chosen on the same folds: "
          f"alpha {own_choice.alpha:g}")
    own_train = own.fit(z[splits.train], tensors.raw_labels[splits.train], tensors.target_lags, own_choice.alpha)
    own_all = own.fit(z[published], tensors.raw_labels[published], tensors.target_lags, own_choice.alpha)

    val = splits.val
    components = {"transformer": predict_rows(load_heads(args.models, lags), tensors, val),
                  "ridge": predict_ridge(w_train, b_train, x[val]),
                  "prior": blend.prior_series(tensors.raw_labels, delay)[val],
                  "own": own.predict(z[val], own_train)}
    fitted = blend.fit(components, tensors.raw_labels[val], tensors.target_lags, cfg.max_weight)
    labels = tensors.raw_labels[val]
    sharpe = {name: metric.summary(labels, c)["sharpe"] for name, c in components.items()}
    sharpe["blend"] = metric.summary(labels, fitted.combine(components, tensors.target_lags))["sharpe"]

    # the prior's sums over the label rows complete by the last training day
    upto_date = read_json(Path(args.data) / "registry.json")["train_dates"][1] - delay
    rows = np.flatnonzero(tensors.date_ids <= upto_date)
    ranks = blend.daily_ranks(tensors.raw_labels[rows])
    with atomic_dir(args.out) as tmp:
        save_arrays(tmp, ridge_train_weights=w_train, ridge_train_intercept=b_train,
                    ridge_all_weights=w_all, ridge_all_intercept=b_all,
                    own_train_coef=own_train, own_all_coef=own_all,
                    prior_sum=np.nansum(ranks, axis=0), prior_count=np.isfinite(ranks).sum(axis=0).astype(np.float64))
        write_json(tmp / "blend.json", {
            "enabled": cfg.enabled, "blend": fitted.to_dict(),
            "target_lags": tensors.target_lags.tolist(),
            "prior": {"upto": int(upto_date), "delay": delay},
            "fit_days": int(val.size),
            "ridge": choice.to_dict(), "ridge_inputs": tensors.model_inputs,
            "own": {**own_choice.to_dict(), "features": tensors.own},
            "fit_sharpe": sharpe})
    weights = "  ".join(f"lag {k}: " + " ".join(f"{n} {w:.3f}" for n, w in zip(blend.COMPONENTS, v))
                        for k, v in fitted.weights.items())
    print(f"blend: {'on' if cfg.enabled else 'off'}; weights fit on {val.size} validation days  {weights}")
    print("blend: validation Sharpe (the days the weights were fit on)  "
          + "  ".join(f"{n} {v:+.3f}" for n, v in sharpe.items()))


if __name__ == "__main__":
    cli.run("blend", main)
