"""Score the served forecast on the holdout against two baselines a user computes in a minute
(a ridge on the same inputs and each target's mean training rank as a constant, `const_rank`)
and, on a synthetic market, the oracle's ceiling.

`model` is what is submitted and served: the blend of the transformer, the ridge, the updating
prior and the own-series fit (`blend` stage), with the ridge and the own-series fit on training
rows. Each component is scored beside it (`transformer`, `blend_ridge`, `prior`, `own`). The
ridge baseline (`ridge`) reads every model input; the blend's ridge reads the source columns the
walk-forward folds chose, which may be all of them.

The validation days are scored the same way (`val_*` metrics): they chose epochs and pruning
and, with the walk-forward folds of the training days, the blend's weights, so the holdout,
which nothing chose from, is the headline. Every fold's and the validation days' scores per
component and per lag (Sharpe, mean IC) are in the report under `walk_forward`, and under
`fallback` what the evidence gave the blend and the prior alone, and which was served.

usage: python stages/evaluate.py --data artifacts/data --tensors artifacts/tensors \
           --models artifacts/finetune --blend artifacts/blend --oracle artifacts/synthetic/oracle \
           --out artifacts/evaluate --metrics artifacts/metrics/evaluate.json
"""
from pathlib import Path

import numpy as np
import polars as pl
import torch

from spreadcast import cli, config
from spreadcast.evaluation import own
from spreadcast.evaluation.baseline import const_rank, predict_ridge
from spreadcast.evaluation.report import compare, has_signal, headline, oracle_for, oracle_table
from spreadcast.features import windows
from spreadcast.io import atomic_dir, load_array, read_json, write_json
from spreadcast.model.net import SPARSE_GATE
from spreadcast.evaluation.blend import prior_series
from spreadcast.evaluation.walkforward import embargo_of
from spreadcast.serve.predictor import load_blend, load_heads, predict_rows


def main() -> None:
    p = cli.parser(__doc__)
    for name in ("--data", "--tensors", "--models", "--blend"):
        p.add_input(name)
    p.add_argument("--oracle", required=True, help="the synthetic market's oracle (used when it matches the data)")
    p.add_output("--out")
    p.add_output("--metrics")
    args = p.parse_args()
    cfg = config.load("evaluate", args.params)
    data_cfg = config.load("data", args.params)
    registry = read_json(Path(args.data) / "registry.json")

    tensors = windows.load(args.tensors)
    rows = tensors.splits.holdout
    labels = tensors.raw_labels[rows]
    dates = tensors.date_ids[rows]
    heads = load_heads(args.models, data_cfg.lags)
    parts = load_blend(args.blend, ridge="train")        # holdout: the ridge that saw training rows only
    delay = embargo_of(tensors.target_lags)
    prior = prior_series(tensors.raw_labels, delay)      # each day: the label rows complete by then

    def served(at: np.ndarray) -> np.ndarray:
        """The forecast submitted and served (the blend), and the transformer alone."""
        alone = predict_rows(heads, tensors, at)
        return (alone if parts is None else predict_rows(heads, tensors, at, blend=parts, prior=prior[at])), alone

    predictions = dict(zip(("model", "transformer"), served(rows)))
    gates = {f"lag{h.lag}": torch.sigmoid(h.model.gate.logit.detach()) for h in heads}
    gate_stats = {lag: {"features": int(g.numel()), "mean": float(g.mean()), "sparsity": float((g < SPARSE_GATE).float().mean())}
                  for lag, g in gates.items()}

    x = tensors.features.numpy()[:, tensors.model_columns]
    z = own.tensor_inputs(tensors)
    own_coef = load_array(Path(args.blend) / "own_train_coef.npy")
    own_offset = load_array(Path(args.blend) / "own_train_offset.npy")
    # the ridge baseline on every model input, and the blend's ridge on the inputs the folds chose,
    # both fit on training rows
    fitted = read_json(Path(args.blend) / "blend.json")
    ridges = {"ridge": (x, *(load_array(Path(args.blend) / f"ridge_baseline_{part}.npy") for part in ("weights", "intercept"))),
              "blend_ridge": (tensors.features.numpy()[:, tensors.columns_of(fitted["ridge_inputs"])],
                              *(load_array(Path(args.blend) / f"ridge_train_{part}.npy") for part in ("weights", "intercept")))}
    for name, (inputs, weights, intercept) in ridges.items():
        predictions[name] = predict_ridge(weights, intercept, inputs[rows])      # standardised, like the model
    constant = const_rank(tensors.raw_labels[tensors.splits.train])
    predictions["const_rank"] = np.tile(constant, (rows.size, 1))
    predictions["prior"] = prior[rows]
    predictions["own"] = own.predict(z[rows], own_coef, own_offset)
    val_rows = tensors.splits.val
    val_predictions = {**dict(zip(("model", "transformer"), served(val_rows))),
                       **{name: predict_ridge(w, b, inputs[val_rows]) for name, (inputs, w, b) in ridges.items()},
                       "const_rank": np.tile(constant, (val_rows.size, 1)),
                       "prior": prior[val_rows],
                       "own": own.predict(z[val_rows], own_coef, own_offset)}

    oracle = oracle_for(Path(args.oracle), registry)
    if oracle is not None and not has_signal(oracle / "ceiling.parquet"):
        oracle = None                   # the null market: no ceiling to measure against
    if oracle is not None:
        predictions["ceiling"] = oracle_table(oracle / "ceiling.parquet", dates, tensors.target_names)
        val_predictions["ceiling"] = oracle_table(oracle / "ceiling.parquet", tensors.date_ids[val_rows],
                                                  tensors.target_names)
    val_metrics, val_daily, _ = compare(tensors.raw_labels[val_rows], val_predictions, tensors.target_lags,
                                        tensors.date_ids[val_rows], cfg.rolling_window)
    val_sharpe = {name: m["sharpe"] for name, m in val_metrics.items()}

    metrics, daily, per_lag = compare(labels, predictions, tensors.target_lags, dates, cfg.rolling_window)
    # the chart shows the validation days, then the holdout (each with its own rolling mean)
    daily = pl.concat([val_daily.with_columns(pl.lit("validation").alias("split")),
                       daily.with_columns(pl.lit("holdout").alias("split"))])
    summary = headline(metrics, val_sharpe, int(rows.size))
    if "ceiling" not in metrics:          # real data: the chart's ceiling series is empty
        daily = daily.with_columns(pl.lit(None, dtype=pl.Float64).alias("ceiling_ic"),
                                   pl.lit(None, dtype=pl.Float64).alias("ceiling_ic_rolling"))
    with atomic_dir(args.out) as tmp:
        write_json(tmp / "report.json", {**metrics, "gates": gate_stats, "validation": val_metrics,
                                         "ridge_walk_forward": fitted.get("ridge"), "fallback": fitted.get("fallback"),
                                         "walk_forward": fitted.get("walk_forward", [])})
        daily.write_csv(tmp / "daily_ic.csv", null_value="NaN")     # a chart skips NaN, draws empty as 0
        per_lag.write_csv(tmp / "per_lag.csv")
    # the headline only: per-lag, ranking-quality and gate statistics are in the report
    write_json(args.metrics, summary)
    line = "  ".join(f"{name} {m['sharpe']:+.3f}" for name, m in metrics.items())
    print(f"evaluate: holdout {rows.size} days, Sharpe  {line}")
    line = "  ".join(f"{name} {v:+.3f}" for name, v in val_sharpe.items())
    print(f"evaluate: validation {val_rows.size} days, Sharpe  {line}")
    for entry in fitted.get("walk_forward", [])[:-1]:
        line = "  ".join(f"{name} {v:+.3f}" for name, v in entry["sharpe"].items())
        print(f"evaluate: walk-forward {entry['fold']}, {entry['days']} training days, Sharpe  {line}")
    if (fitted.get("fallback") or {}).get("prior_alone"):
        print("evaluate: the model is the prior alone (blend.fallback: the evidence backs it over the blend; "
              "blend.json's `fallback`)")


if __name__ == "__main__":
    cli.run("evaluate", main)
