"""Predict every test day and write the submission (and score it where the answers are known).

usage: python stages/submit.py --data artifacts/data --tensors artifacts/tensors \
           --models artifacts/finetune --blend artifacts/blend --oracle artifacts/synthetic/oracle \
           --out artifacts/submission --metrics artifacts/metrics/submit.json \
           [--train artifacts/train --work artifacts/.work/refit]

The forecast is the served one: the blend of the heads, the ridge refit on every published
label and the prior, updated with every label row complete by each day (the training labels
and the lagged test label files). With `submit.refit` (the default) each selected head is first
refit on every labelled day (train, validation and holdout): from the fine-tuned model for the
epochs fine-tuning's validation chose (`refit_from: final`), or anew for the train stage's
(`scratch`).

Where the answers are known it scores the scored days that have two labels or more: against
the synthetic market's oracle (with its ceiling), or else against the labels the lagged test
label files reveal for the test days (as the replay of `predict()` does), beside what a user
computes in a minute: each target's mean daily rank over the training labels as a constant,
and the ridge on every model input fit on every published label (`ridge_baseline_all_*`).
"""
from pathlib import Path

import numpy as np
import polars as pl

from spreadcast import cli, config
from spreadcast.data.layout import DATE, SCORED
from spreadcast.data.targets import DataError
from spreadcast.evaluation import metric
from spreadcast.evaluation.report import oracle_for, oracle_table
from spreadcast.features import windows
from spreadcast.io import atomic_dir, load_array, read_json, write_json
from spreadcast.evaluation.baseline import const_rank, predict_ridge
from spreadcast.evaluation.blend import prior_series, with_revealed
from spreadcast.serve.predictor import load_blend, load_heads, predict_rows
from spreadcast.training.finetune import refit
from spreadcast.model import checkpoint


def main() -> None:
    p = cli.parser(__doc__)
    for name in ("--data", "--tensors", "--models", "--blend"):
        p.add_input(name)
    p.add_argument("--oracle", required=True, help="the synthetic market's oracle (used when it matches the data)")
    p.add_output("--out")
    p.add_output("--metrics")
    p.add_input("--train", default="artifacts/train", help="the train stage's output (best epochs, for refit)")
    p.add_output("--work", help="refit checkpoints")
    args = p.parse_args()
    data_cfg = config.load("data", args.params)
    cfg = config.load("submit", args.params)
    registry = read_json(Path(args.data) / "registry.json")
    test_days = pl.read_parquet(Path(args.data) / "test_days.parquet")
    if test_days.height == 0:
        raise DataError(f"{registry['source']}: no test.csv rows to predict")

    tensors = windows.load(args.tensors)
    dates = test_days[DATE].to_numpy()
    rows = tensors.rows_of(dates)
    if (rows < tensors.history - 1).any():
        raise DataError(f"test date_id {int(dates[0])}: fewer than windows.history days of history before it")
    heads = load_heads(args.models, data_cfg.lags)
    refitted = {}
    if cfg.refit:
        train_cfg = config.load("train", args.params)
        finetune_cfg = config.load("finetune", args.params)
        chosen_by = Path(args.models) if cfg.refit_from == "final" else Path(args.train)
        for head in heads:
            epochs = cfg.refit_epochs or max(1, read_json(chosen_by / f"lag{head.lag}" / "best.json")["epoch"])
            print(f"submit: refitting lag {head.lag} on every labelled day for {epochs} epochs "
                  f"({'from the final model' if cfg.refit_from == 'final' else 'from scratch'})", flush=True)
            model, meta = refit(Path(args.models) / f"lag{head.lag}" / "model", tensors, head.lag, train_cfg,
                                epochs, Path(args.work) / f"lag{head.lag}", finetune_cfg.linear_start_alpha,
                                start=cfg.refit_from,
                                lr=finetune_cfg.lr if cfg.refit_from == "final" else None)
            head.model = model.eval()
            refitted[head.lag] = (model, meta)
    parts = load_blend(args.blend, ridge="all")
    # the training labels, and those the lagged test label files reveal at their label dates
    labels = with_revealed(tensors.date_ids, tensors.raw_labels, pl.read_parquet(Path(args.data) / "revealed.parquet"),
                           tensors.target_names)
    prior = None if parts is None else prior_series(labels, parts.delay)[rows]
    preds = predict_rows(heads, tensors, rows, blend=parts, prior=prior)
    if not np.isfinite(preds).all():
        raise DataError("non-finite prediction in the submission")
    constant = np.flatnonzero(preds.std(axis=1) == 0)
    if constant.size:
        raise DataError(f"constant prediction row for date_id {int(dates[constant[0]])}")
    submission = pl.DataFrame({DATE: dates, **{n: preds[:, j] for j, n in enumerate(tensors.target_names)}})

    summary = {"rows": submission.height, "targets": len(tensors.target_names), "refit": cfg.refit,
               "overlap_days_in_sample": registry.get("test_overlap_days", 0)}
    oracle = oracle_for(Path(args.oracle), registry)
    # the answers: the synthetic market's oracle, or else the labels the test files reveal
    answers = (oracle_table(oracle / "answers.parquet", dates, tensors.target_names) if oracle is not None
               else labels[rows])
    scored = test_days[SCORED].to_numpy()
    # a scored day with fewer than two labels (the targets' legs closed, or not revealed) has no rank correlation
    unanswered = scored & (np.isfinite(answers).sum(axis=1) < 2)
    scoring = bool((scored & ~unanswered).any())
    if scoring:
        scored = scored & ~unanswered
        answers = answers[scored]
        summary["answers"] = "synthetic oracle" if oracle is not None else "labels revealed by the test files"
        summary["scored_days"] = int(scored.sum())
        summary["scored_days_unlabelled"] = int(unanswered.sum())
        summary["test_sharpe"] = metric.score(answers, preds[scored])
        # what a user computes in a minute: each target's mean daily rank over the training labels,
        # and the ridge on every model input fit on every published label (the blend stage's)
        constant = const_rank(tensors.raw_labels[tensors.date_ids <= registry["train_dates"][1]])
        summary["const_rank_sharpe"] = metric.score(answers, np.tile(constant, (len(answers), 1)))
        weights, intercept = (load_array(Path(args.blend) / f"ridge_baseline_all_{part}.npy")
                              for part in ("weights", "intercept"))
        ridge = predict_ridge(weights, intercept, tensors.features.numpy()[rows[scored]][:, tensors.model_columns])
        summary["ridge_sharpe"] = metric.score(answers, ridge)
        if oracle is not None:
            ceiling = oracle_table(oracle / "ceiling.parquet", dates, tensors.target_names)[scored]
            summary["ceiling_sharpe"] = metric.score(answers, ceiling)
            summary["fraction_of_ceiling"] = summary["test_sharpe"] / summary["ceiling_sharpe"]
    with atomic_dir(args.out) as tmp:
        submission.write_csv(tmp / "submission.csv")
        submission.write_parquet(tmp / "submission.parquet")
        for lag, (model, meta) in refitted.items():     # the bundle exports these when present
            checkpoint.save(tmp / "models" / f"lag{lag}" / "model", {"model": model.state_dict()}, meta)
    write_json(args.metrics, summary)
    extra = ""
    if scoring:
        extra = (f"; scored on {summary['scored_days']} days against the {summary['answers']}: Sharpe "
                 f"{summary['test_sharpe']:+.3f} (a ridge on every input {summary['ridge_sharpe']:+.3f}, "
                 f"each target's mean training rank {summary['const_rank_sharpe']:+.3f}"
                 + (f", ceiling {summary['ceiling_sharpe']:+.3f}" if oracle is not None else "") + ")")
    print(f"submit: {submission.height} rows x {len(tensors.target_names)} targets{extra}")


if __name__ == "__main__":
    cli.run("submit", main)
