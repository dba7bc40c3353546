"""Engineer features from published prices and screen them on the training fold.

The registry's `features` are every column the scaling stage standardises: the screened model
inputs (`model_inputs`, what the transformer and the ridge read) and, with `features.own`, each
target's own features (`own`: one name or null per slot, for the blend's own-series component),
which bypass the screen.

The screen is repeated on the fitting days of each walk-forward fold (`fold_inputs`, one list
per fold, oldest first), so a fold judges a fit whose inputs were chosen without its own days;
those inputs are scaled and exported too.

With `features.levels`, every level feature (a signed series' level) that is neither missing
beyond `prescreen.max_missing` nor constant on the training days is exported as well, screened
or not (`level_inputs`): the blend's ridge has a candidate that reads them alone
(`blend.ridge_levels`), since a univariate IC can rank a level that predicts many targets
through different loadings below hundreds of other columns. Which of them pass reads no label.
With `prescreen.keep_levels` they are model inputs too, on the training days and on every fold.

usage: python stages/prescreen.py --data artifacts/data --splits artifacts/splits --out artifacts/features
"""
import dataclasses

import numpy as np
import polars as pl

from spreadcast import cli, config
from spreadcast.data.ingest import load_ingested
from spreadcast.data.layout import DATE
from spreadcast.features.engineer import column_kinds, engineer, level_features, own_features, own_slots
from spreadcast.features.prescreen import prescreen, usable
from spreadcast.evaluation.walkforward import embargo_of, folds
from spreadcast.features import splits as date_splits
from spreadcast.io import atomic_dir, write_json


def main() -> None:
    p = cli.parser(__doc__)
    p.add_input("--data")
    p.add_input("--splits")
    p.add_output("--out")
    args = p.parse_args()
    feat_cfg = config.load("features", args.params)
    cfg = config.load("prescreen", args.params)
    n_folds = config.load("walkforward", args.params).folds

    data = load_ingested(args.data)
    kinds = column_kinds(data.prices)
    names, matrix = engineer(data.prices, feat_cfg, data.targets, data.labels, data.revealed, kinds)
    splits = date_splits.load(args.splits, data.date_ids)
    index = {n: j for j, n in enumerate(names)}
    candidates = level_features(names) if feat_cfg.levels else []
    levels = usable(matrix[np.ix_(splits.train, [index[n] for n in candidates])], candidates, cfg) if candidates else []
    joined = levels if cfg.keep_levels else []     # model inputs whatever the screen says

    def screened(rows):
        chosen, lines = prescreen(matrix[rows], names, data.labels[rows], cfg)
        more = [n for n in joined if n not in chosen]
        for line in lines:
            if line["feature"] in more:
                line.update(kept=True, reason="kept: a level feature (prescreen.keep_levels)")
        return chosen + more, lines

    kept, report = screened(splits.train)
    print(f"prescreen: {len(names)} engineered features, {len(kept)} kept "
          f"(training fold: {splits.train.size} days)" + (f", the {len(joined)} level features among them" if joined else ""))
    embargo = embargo_of(t.lag for t in data.targets)
    fold_inputs = [screened(fit)[0] for fit, _ in folds(splits.train, n_folds, embargo)]
    extra = {n for k in fold_inputs for n in k} - set(kept)
    print(f"prescreen: repeated on the fitting days of {n_folds} walk-forward folds: "
          f"{', '.join(str(len(set(k) & set(kept))) for k in fold_inputs)} of their inputs among the {len(kept)}, "
          f"{len(extra)} more features")

    own = [[n if n in index else None for n in own_features(t, feat_cfg)] for t in data.targets] if feat_cfg.own else []
    mine = [n for slots in own for n in slots if n is not None]
    columns = list(dict.fromkeys(kept + [n for k in fold_inputs for n in k] + mine + levels))
    if own:
        print(f"prescreen: {len(set(mine) - set(kept) - extra)} more features are targets' own series "
              f"({len(own_slots(feat_cfg))} slots per target)")
    if candidates:
        print(f"prescreen: {len(levels)} of {len(candidates)} level features usable for the blend's level ridge, "
              f"{len(set(levels) - set(kept) - extra - set(mine))} of them beyond the screen")
    with atomic_dir(args.out) as tmp:
        pl.DataFrame({DATE: data.date_ids, **{n: matrix[:, index[n]] for n in columns}}).write_parquet(
            tmp / "features.parquet")
        write_json(tmp / "registry.json", {"features": columns, "model_inputs": kept,
                                           "fold_inputs": fold_inputs, "level_inputs": levels,
                                           "own": {"slots": own_slots(feat_cfg) if own else [], "features": own},
                                           "engineering": dataclasses.asdict(feat_cfg), "kinds": kinds,
                                           "splits": splits.to_dict(data.date_ids)})
        write_json(tmp / "report.json", report)
        ranked = sorted(report, key=lambda r: -r["score"])
        pl.DataFrame({"rank": list(range(1, len(ranked) + 1)),
                      "feature": [r["feature"] for r in ranked],
                      "score": [r["score"] for r in ranked],
                      "kept": [int(r["kept"]) for r in ranked]}).write_csv(tmp / "scores.csv")


if __name__ == "__main__":
    cli.run("prescreen", main)
