"""What the served blend would score on the holdout with other versions of its ridge and
own-series components, measured on the projects `bench/quality.py --work DIR` keeps, without
rerunning a stage.

usage: python bench/component_lab.py --work DIR [--markets default,levels,...]
                                     [--variants base,refit,...] [--every 10] [--evidence-folds 2]
                                     [--out bench/results/component_lab.json]

For each finished market project under DIR it rebuilds what the `blend` stage fits the weights
on (every walk-forward fold's forecasts of the ridge, the own-series fit and the prior, and the
validation days' forecasts of all four components) and the holdout's components as `evaluate`
computes them, and checks that the blend fit on them scores the project's reported holdout
Sharpe. Each variant then replaces the ridge's or the own-series fit's forecasts (on the evidence
where the variant changes them, and on the holdout), the weights are fit again, and the holdout
is scored. The transformer and the prior are those of the project throughout.

Variants:
- `base`: the components as the pipeline fits them (the check).
- `refit`: the ridge and the own-series fit refit on the training and validation days before the
  holdout, with the penalties the folds chose (what a refit at the end of validation would give).
- `online`: both refit every `--every` holdout days on every label row published by then, as the
  prior keeps learning while serving.
- `families`: the ridge reads only the feature families (a name's part after the last `__`:
  `ret5`, `level`, `z60`, ...) that a greedy walk-forward search adds while the folds' mean
  Sharpe rises by more than 0.01; penalty and half-life chosen with them.
- `rank_target`: the ridge fit to the labels' daily centred ranks (the own-series fit's target)
  instead of the standardised labels; penalty and half-life chosen again on the folds.
- `sharpe`: the same four components, weighted to maximise the Sharpe ratio of the blend's daily
  covariance with the label ranks over the evidence (`sharpe_weights`) instead of the squared
  error of the ranks.
- `reduced_rank`: the ridge's weights (inputs x targets) projected on the r leading directions of
  its fitted values across the targets (reduced-rank ridge: targets driven by a few common states
  share them), r in 1, 2, 4, 8, 16 or every direction, chosen with the penalty and half-life on
  the folds.
- `stack`: beside the four components, one ridge per feature family (each fold's screened
  inputs of that family, penalty chosen on the folds), all weighted together by the bounded least
  squares of the ranks per lag: the families' evidence decides their weights, as the other
  components'.
- `pooled`: the same four components, one set of weights fit on every target and served for
  every lag (`blend.pool_lags: true`), or per lag where the project pooled.
- `no_transformer`: the blend of the ridge, the prior and the own-series fit alone (the
  transformer's forecasts zero on the evidence and the holdout): what the transformer's weight,
  which rests on the validation days alone, adds.
- `fold_transformer`: the transformer also forecasts the last `--evidence-folds` walk-forward
  folds (default 2), so its weight rests on days no choice was made on as well: each head's
  training configuration (the train stage's, on the fold's own screened inputs, the same seed)
  trained on the fold's fitting days for as many epochs as the head's training chose, with no
  early stopping on the fold, forecasts the fold (`train.evidence_folds`, `stages/train.py`'s
  `fold_evidence`; it replaces any fold forecasts the project has). The served heads are pruned
  and fine-tuned after that training; the folds' forecasts are of the training configuration.
- `centre`: the ridge and the own-series fit with `blend.centre` the other way from the
  project's (a project built with it on is measured without, and the other way round): the
  ridge's source columns, penalty and half-life and the own-series penalty chosen again on the
  folds, scoring them as they then forecast; the transformer's evidence is the project's.
- `weigh`: `walkforward.weigh` the other way from the project's: the ridge's inputs, penalty and
  half-life and the own-series penalty chosen again on the folds, each fold's Sharpe weighing
  alike or by its fitting days in the mean.
- `levels`: `blend.ridge_levels` the other way from the project's: the ridge's candidate inputs
  with or without the level features alone (where the project's tensors carry them), its inputs,
  penalty and half-life and the own-series penalty chosen again on the folds.
- `fold_only`: the same folds' forecasts, and the transformer's weight rests on them alone (its
  forecasts of the validation days, on which its epochs, prune count and fine-tuning were
  chosen, left out of the evidence; the holdout is forecast by the served heads as always).
- `per_day`: the ridge fit to each day's labels divided by their spread across the targets that
  day, so every day weighs alike in the fit, as in the daily score (high-volatility days
  otherwise dominate a least-squares fit); its inputs, penalty and half-life chosen again.
- `widest`: the ridge's inputs chosen as the candidate reading the most (every input, then the
  larger count, then a named candidate) among those whose fold mean is within the margin of the
  best (`widest_within_margin`), instead of the best unless every input is within the margin.
- `per_day_widest`: both.
- `transformer_offset`: the transformer's forecasts less their mean per target, so each target's
  constant ranking is the prior's alone, as `blend.centre` makes it for the ridge and the
  own-series fit: on each fold it forecast, less its mean over that fold's days; on the
  validation and holdout days, less its mean over the validation days. Both stand in, with the
  forecasts alone (no label), for its mean over its fitting days, which the projects do not keep.
- `own_per_target`: the own-series component as one ridge per target on that target's own
  inputs, centred on its fitting rows (`own_per_target_fit`), instead of one fit pooled over
  each lag's targets; its penalty chosen on the folds among OWN_PER_TARGET_ALPHAS.
- `gate`: the prior alone unless the blend earns its other components: the blend's weights fit
  leaving out each part of the evidence (each fold, then the validation days) in turn, scored on
  the part left out, must beat the prior's Sharpe over those days by more than 1/sqrt(days)
  (`cross_validated_shrink` with the penalties GATE).
- `gate_wf`: the same, each part forecast by weights fit on the parts before it (walk-forward;
  the first part is not scored).
- `gate_last`: the same, the validation days alone forecast, by weights fit on the folds.
- `shrink`: the weights other than the prior's penalised (`penalised_fit`), the penalty among
  SHRINKS (inf: the prior alone) the one whose blend scores best on the parts left out in turn.
- `shrink_wf`: the same, walk-forward as in `gate_wf`.
- `gate_sig`: `gate`, where the prior alone is a candidate only if its own Sharpe over the
  evidence is at least `blend.PRIOR_Z` (2) / sqrt(days): the blend falls back only to a ranking with evidence
  behind it, not to one that scores within noise of nothing. What `blend.fallback` does (with
  the project's own weight fit, `blend.fit`).
- `fallback`: `blend.fallback` the other way from the project's.

The sums are over the markets other than `null`, where there is nothing to gain.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "stages"))
sys.path.insert(0, str(ROOT / "bench"))

from blend import candidate_columns, fold_forecasts, ridge_candidates, ridge_options, transformer_evidence  # noqa: E402  (stages/blend.py: the stage's evidence)
from train import chosen_epochs, fold_evidence  # noqa: E402  (stages/train.py: a head's configuration on the folds)
from quality import finished_projects  # noqa: E402

from spreadcast import config  # noqa: E402
from spreadcast.evaluation import blend, metric, own  # noqa: E402
from spreadcast.evaluation.walkforward import (  # noqa: E402
    RidgeChoice, _RidgePath, embargo_of, fit_ridge, folds, recency_weights, select_ridge)
from spreadcast.features import windows  # noqa: E402
from spreadcast.serve.predictor import load_heads, predict_rows  # noqa: E402
from spreadcast.training import distributed  # noqa: E402

VARIANTS = ("base", "refit", "online", "families", "rank_target", "sharpe", "reduced_rank", "stack", "pooled",
            "no_transformer", "fold_transformer", "fold_only", "centre", "levels", "per_day", "widest",
            "per_day_widest", "transformer_offset", "own_per_target", "gate", "gate_wf", "gate_last", "shrink",
            "shrink_wf", "gate_sig", "fallback", "weigh")
SHRINKS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, np.inf)   # shrink's penalties on the weights other than the prior's
GATE = (np.inf, 0.0)                                 # gate's: the prior alone, or the blend as it is
OWN_PER_TARGET_ALPHAS = (0.1, 1.0, 10.0, 100.0)   # own_per_target's penalties (times the rows)
RANKS = (1, 2, 4, 8, 16, 0)  # reduced_rank's candidates (0: every direction, the ridge itself)
GREEDY_GAIN = 0.01          # a family joins the ridge's inputs only if the folds' mean rises by more


class Project:
    """One finished quality project: its tensors, the blend stage's choices, and the components."""

    def __init__(self, root: Path):
        params = yaml.safe_load((root / "params.yaml").read_text())
        self.root = root
        art = root / "artifacts"
        self.tensors = t = windows.load(art / "tensors")
        self.choice = json.loads((art / "blend" / "blend.json").read_text())
        self.cfg, self.n_folds = params["blend"], params["walkforward"]["folds"]
        self.weigh = params["walkforward"].get("weigh", "equal")         # `walkforward.weigh` (before it: equal)
        self.centred = bool(self.choice.get("centre", False))   # `blend.centre` (projects built before it: off)
        self.levels = bool(params["blend"].get("ridge_levels", False))   # `blend.ridge_levels` (before it: off)
        self.fallback = bool(params["blend"].get("fallback", False))     # `blend.fallback` (before it: off)
        self.reported = json.loads((art / "metrics" / "evaluate.json").read_text())["model_sharpe"]
        self.every, self.y = t.features.numpy().astype(np.float64), t.labels.numpy().astype(np.float64)
        self.model_columns = t.columns_of(self.choice["ridge_inputs"])     # the ridge's inputs
        self.x = self.every[:, self.model_columns]
        self.z = own.tensor_inputs(t)
        chosen = self.choice["ridge"]["columns"]                 # the inputs the folds chose (a count, or "levels")
        self.fold_columns = [candidate_columns(t, c, chosen) for c in t.fold_columns(self.n_folds)]
        self.delay = embargo_of(t.target_lags)
        self.prior = blend.prior_series(t.raw_labels, self.delay)
        self.ridge = RidgeChoice(self.choice["ridge"]["alpha"], self.choice["ridge"]["halflife"], [])
        self.own_alpha = self.choice["own"]["alpha"]
        self.lags = params["data"]["lags"]
        heads = load_heads(art / "finetune", self.lags)
        splits = t.splits
        self.evidence = fold_forecasts(t, self.every, self.y, self.z, self.prior, self.fold_columns, self.ridge,
                                       self.own_alpha, self.n_folds, self.delay,
                                       transformer_evidence(art / "train", self.lags, t, self.n_folds), centre=self.centred)
        self.val = self._components(splits.val, splits.train, predict_rows(heads, t, splits.val))
        self.holdout = self._components(splits.holdout, splits.train, predict_rows(heads, t, splits.holdout))

    def _components(self, rows, fit_rows, transformer) -> dict:
        w, b = fit_ridge(self.x, self.y, self.ridge.alpha, fit_rows, self.ridge.halflife, not self.centred)
        coef = own.fit(self.z[fit_rows], self.tensors.raw_labels[fit_rows], self.tensors.target_lags, self.own_alpha)
        return {"transformer": transformer, "ridge": self.x[rows] @ w + b, "prior": self.prior[rows],
                "own": own.predict(self.z[rows], coef, own.offset(self.z[fit_rows], coef, self.centred))}

    def score(self, evidence_ridge=None, holdout: dict | None = None, fit=None, extra=None,
              fallback: bool | None = None) -> dict:
        """Holdout Sharpe of the blend (weights fit on the evidence by `fit`, default `blend.fit` as
        the project's `blend.pool_lags` asks, and the prior alone where `blend.fallback` (the
        project's, or `fallback`) finds the evidence backs it; its ridge replaced
        by `evidence_ridge` where given) and of each component, with `holdout` replacing or adding
        components. `extra` adds components to each part of the evidence (folds, then validation)."""
        parts = [comps for _, _, comps in self.evidence] + [self.val]
        if evidence_ridge is not None:
            parts = [{**comps, "ridge": r} for comps, r in zip(parts, evidence_ridge)]
        if extra is not None:
            parts = [{**comps, **more} for comps, more in zip(parts, extra)]
        rows = [r for _, r, _ in self.evidence] + [self.tensors.splits.val]
        if self.cfg["fit_on"] != "walk_forward":          # `blend.fit_on: validation`
            parts, rows = parts[-1:], rows[-1:]
        raw, lags = self.tensors.raw_labels, self.tensors.target_lags
        gate = None
        if fit is None:
            fit = functools.partial(blend.fit, pool_lags=self.cfg.get("pool_lags", False))
            if (self.fallback if fallback is None else fallback) and len(parts) > 1:
                gate = blend.fallback([(p, raw[r]) for p, r in zip(parts, rows)], lags, self.cfg["max_weight"],
                                      self.cfg.get("pool_lags", False))
        fitted = fit({n: np.vstack([p[n] for p in parts]) for n in parts[0]},
                     np.vstack([raw[r] for r in rows]), lags, self.cfg["max_weight"])
        if gate is not None and gate["prior_alone"]:
            fitted = blend.prior_alone(lags, self.cfg["max_weight"])
        served = {**self.holdout, **(holdout or {})}
        truth = raw[self.tensors.splits.holdout]
        out = {"model": metric.summary(truth, fitted.combine(served, lags))["sharpe"]}
        out.update({n: metric.summary(truth, served[n])["sharpe"] for n in ("ridge", "own")})
        out = {k: round(float(v), 4) for k, v in out.items()}
        return out if gate is None else {**out, "prior_alone": gate["prior_alone"]}

    # -- variants --------------------------------------------------------------------------------
    def refit(self) -> dict:
        splits = self.tensors.splits
        fit_rows = np.concatenate([splits.train, splits.val])
        comps = self._components(splits.holdout, fit_rows, self.holdout["transformer"])
        return self.score(holdout={"ridge": comps["ridge"], "own": comps["own"]})

    def online(self, every: int) -> dict:
        t, hold = self.tensors, self.tensors.splits.holdout
        labelled = np.flatnonzero(np.isfinite(t.raw_labels).any(axis=1))
        ridge, mine = np.zeros_like(self.holdout["ridge"]), np.zeros_like(self.holdout["own"])
        for start in range(0, hold.size, every):
            block = slice(start, start + every)
            fit_rows = labelled[labelled <= hold[start] - self.delay]     # published by the block's first day
            comps = self._components(hold[block], fit_rows, None)
            ridge[block], mine[block] = comps["ridge"], comps["own"]
        return self.score(holdout={"ridge": ridge, "own": mine})

    def _ridge_variant(self, y: np.ndarray, keep) -> dict:
        """The ridge fit to `y` on the columns `keep(columns)` retains, its penalty and half-life
        chosen on the folds; its forecasts replace the ridge's on the evidence and the holdout."""
        t = self.tensors
        fold_columns = [keep(c) for c in self.fold_columns]
        choice = select_ridge(self.every, y, t.raw_labels, t.splits.train, self.cfg["ridge_alphas"],
                              self.cfg["ridge_halflives"], self.n_folds, self.delay, fold_columns, not self.centred)
        evidence = [comps["ridge"] for _, _, comps in fold_forecasts(
            t, self.every, y, self.z, self.prior, fold_columns, choice, self.own_alpha, self.n_folds, self.delay,
            centre=self.centred)]
        x = self.every[:, keep(self.model_columns)]
        w, b = fit_ridge(x, y, choice.alpha, t.splits.train, choice.halflife, not self.centred)
        evidence.append(x[t.splits.val] @ w + b)
        return self.score(evidence, {"ridge": x[t.splits.holdout] @ w + b})

    def fallback_variant(self) -> dict:
        """The blend with `blend.fallback` the other way from the project's."""
        return {**self.score(fallback=not self.fallback), "fallback": not self.fallback}

    def centre(self) -> dict:
        """The blend with `blend.centre` the other way (see the module)."""
        return {**self._reselect(not self.centred, self.levels), "centre": not self.centred}

    def weigh_variant(self) -> dict:
        """The blend's choices on the folds with `walkforward.weigh` the other way (see the module)."""
        other = "fit_days" if self.weigh == "equal" else "equal"
        return {**self._reselect(self.centred, self.levels, weigh=other), "weigh": other}

    def levels_variant(self) -> dict:
        """The blend with `blend.ridge_levels` the other way (see the module)."""
        return {**self._reselect(self.centred, not self.levels), "ridge_levels": not self.levels}

    def per_day(self, widest: bool = False) -> dict:
        """The blend's ridge fit to each day's labels divided by their spread across the targets
        that day (see the module), its inputs, penalty and half-life chosen again."""
        spread = np.nanstd(self.y, axis=1, keepdims=True)
        y = self.y / np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
        return {**self._reselect(self.centred, self.levels, y=y, widest=widest), "widest": widest}

    def widest(self) -> dict:
        """The ridge's inputs: the candidate reading the most among those within the margin of
        the best fold mean (see the module)."""
        return {**self._reselect(self.centred, self.levels, widest=True), "widest": True}

    def transformer_offset(self) -> dict:
        """The transformer less its mean forecast per target (see the module)."""
        parts = [comps for _, _, comps in self.evidence]
        extra = [{"transformer": c["transformer"] - c["transformer"].mean(axis=0)} if np.any(c["transformer"]) else {}
                 for c in parts]
        offset = self.val["transformer"].mean(axis=0)
        extra.append({"transformer": self.val["transformer"] - offset})
        return self.score(holdout={"transformer": self.holdout["transformer"] - offset}, extra=extra)

    def own_per_target(self) -> dict:
        """Each target's own ridge on its own-series inputs instead of one pooled per lag (see the
        module), its penalty chosen on the folds."""
        t, splits = self.tensors, self.tensors.splits
        pairs = list(folds(splits.train, self.n_folds, self.delay))
        mean = {a: np.mean([metric.summary(t.raw_labels[test], own_per_target_forecast(
            self.z, own_per_target_fit(self.z, self.y, fit, a), fit, test))["sharpe"] for fit, test in pairs])
            for a in OWN_PER_TARGET_ALPHAS}
        alpha = max(mean, key=mean.get)
        extra = [{"own": own_per_target_forecast(self.z, own_per_target_fit(self.z, self.y, fit, alpha), fit, test)}
                 for fit, test in pairs]
        coef = own_per_target_fit(self.z, self.y, splits.train, alpha)
        extra.append({"own": own_per_target_forecast(self.z, coef, splits.train, splits.val)})
        return {**self.score(holdout={"own": own_per_target_forecast(self.z, coef, splits.train, splits.holdout)},
                             extra=extra), "own_alpha": alpha, "folds_mean": round(float(mean[alpha]), 4)}

    def _reselect(self, centre: bool, levels: bool, y: np.ndarray | None = None, widest: bool = False,
                  weigh: str | None = None) -> dict:
        """The blend whose ridge (inputs, penalty, half-life) and own-series penalty are chosen
        again on the folds with `blend.centre` = `centre` and `blend.ridge_levels` = `levels`,
        the ridge fit to `y` (default: the standardised labels) and its inputs chosen by
        `widest_within_margin` where `widest`, the folds weighed by `weigh` (default: the project's
        `walkforward.weigh`)."""
        t, cfg = self.tensors, self.cfg
        splits = t.splits
        y = self.y if y is None else y
        weigh = weigh or self.weigh
        options, count, margin = ridge_options(t, self.every, y, self.n_folds, self.delay, cfg["ridge_alphas"],
                                               cfg["ridge_halflives"], ridge_candidates(t, cfg["ridge_columns"], levels),
                                               not centre, weigh)
        if widest:
            count = widest_within_margin(options, margin)
        choice = options[count]
        own_alpha = own.select(self.z, t.raw_labels, t.target_lags, splits.train, cfg["own_alphas"], self.n_folds,
                               self.delay, centre, weigh).alpha
        evidence = fold_forecasts(t, self.every, y, self.z, self.prior,
                                  [candidate_columns(t, c, count) for c in t.fold_columns(self.n_folds)], choice,
                                  own_alpha, self.n_folds, self.delay, centre=centre)
        x = self.every[:, candidate_columns(t, t.model_columns, count)]
        w, b = fit_ridge(x, y, choice.alpha, splits.train, choice.halflife, not centre)
        coef = own.fit(self.z[splits.train], t.raw_labels[splits.train], t.target_lags, own_alpha)
        offset = own.offset(self.z[splits.train], coef, centre)

        def served(rows):
            return {"ridge": x[rows] @ w + b, "own": own.predict(self.z[rows], coef, offset)}

        parts = [{n: comps[n] for n in ("ridge", "own")} for _, _, comps in evidence] + [served(splits.val)]
        return {**self.score(holdout=served(splits.holdout), extra=parts), "columns": count, "alpha": choice.alpha,
                "halflife": choice.halflife, "own_alpha": own_alpha}

    def rank_target(self) -> dict:
        return self._ridge_variant(blend.centred_ranks(self.tensors.raw_labels), lambda cols: cols)

    def sharpe(self) -> dict:
        return self.score(fit=sharpe_weights)

    def shrunk(self, penalties, margin: bool, scheme: str, prior_z: float = -np.inf) -> dict:
        """The weights other than the prior's shrunk by the penalty chosen by
        `cross_validated_shrink` over the evidence's parts (each fold, then the validation days)."""
        sizes = [len(r) for _, r, _ in self.evidence] + [len(self.tensors.splits.val)]
        chosen = {}

        def fit(components, labels, lags, max_weight):
            out, chosen["cv"] = cross_validated_shrink(components, labels, lags, max_weight, sizes, penalties, margin,
                                                       scheme, prior_z)
            return out
        return {**self.score(fit=fit), **chosen}

    def pooled(self) -> dict:
        return self.score(fit=functools.partial(blend.fit, pool_lags=not self.cfg.get("pool_lags", False)))

    def no_transformer(self) -> dict:
        zero = lambda comps: {"transformer": np.zeros_like(comps["transformer"])}   # noqa: E731
        parts = [comps for _, _, comps in self.evidence] + [self.val]
        return self.score(holdout=zero(self.holdout), extra=[zero(c) for c in parts])

    def fold_transformer(self, n_evidence: int, validation: bool = True) -> dict:
        forecasts = self.fold_forecasts(n_evidence)
        parts = [{"transformer": forecasts.get(k, np.zeros_like(comps["transformer"]))}
                 for k, (_, _, comps) in enumerate(self.evidence)]
        parts.append({} if validation else {"transformer": np.zeros_like(self.val["transformer"])})
        return self.score(extra=parts)

    @functools.cache
    def fold_forecasts(self, n_evidence: int) -> dict[int, np.ndarray]:
        """{fold k (0 the oldest): the transformer's forecasts} of the last `n_evidence` folds."""
        t = self.tensors
        cfg = config.load("train", self.root / "params.yaml")
        out = {}
        for lag in self.lags:
            trained = json.loads((self.root / "artifacts" / "metrics" / f"train_lag{lag}.json").read_text())
            with tempfile.TemporaryDirectory() as tmp:
                found = fold_evidence(lag, cfg, self.n_folds, t, chosen_epochs(trained), {"lag": lag}, Path(tmp),
                                      distributed.SINGLE, torch.device("cpu"), n_evidence)
            for number, entry in found.items():
                rows = np.flatnonzero(np.isin(t.date_ids, entry["dates"]))
                out.setdefault(number - 1, np.zeros((rows.size, t.target_lags.size)))[:, t.head(lag)] = entry["forecast"]
        return out

    def reduced_rank(self) -> dict:
        t, cfg = self.tensors, self.cfg
        splits = folds(t.splits.train, self.n_folds, self.delay)
        table = {}
        for k, (fit_rows, test_rows) in enumerate(splits):
            xk = self.every[:, self.fold_columns[k]]
            for h in cfg["ridge_halflives"]:
                path = _RidgePath(xk[fit_rows], self.y[fit_rows], recency_weights(fit_rows, h))
                for a in cfg["ridge_alphas"]:
                    for r, (w, b) in low_rank(path, a, RANKS, not self.centred).items():
                        table.setdefault((a, h, r), []).append(
                            metric.summary(t.raw_labels[test_rows], xk[test_rows] @ w + b)["sharpe"])
        a, h, r = max(table, key=lambda key: (np.mean(table[key]), key[0], key[1] <= 0))

        def fit(x, rows):
            return low_rank(_RidgePath(x[rows], self.y[rows], recency_weights(rows, h)), a, [r], not self.centred)[r]

        evidence = []
        for k, (fit_rows, test_rows) in enumerate(splits):
            w, b = fit(self.every[:, self.fold_columns[k]], fit_rows)
            evidence.append(self.every[test_rows][:, self.fold_columns[k]] @ w + b)
        w, b = fit(self.x, t.splits.train)
        evidence.append(self.x[t.splits.val] @ w + b)
        return {**self.score(evidence, {"ridge": self.x[t.splits.holdout] @ w + b}), "rank": r}

    def stack(self) -> dict:
        """One ridge per feature family as extra components (see the module)."""
        t = self.tensors
        families = sorted({f for cols in self.fold_columns for f in self._family(cols)}
                          & set(self._family(self.model_columns)))
        extra, holdout = [{} for _ in range(len(self.evidence) + 1)], {}
        for family in families:
            keep = lambda cols: cols[self._family(cols) == family]                 # noqa: E731
            columns = [keep(c) for c in self.fold_columns]
            if not all(c.size for c in columns):
                continue
            choice = select_ridge(self.every, self.y, t.raw_labels, t.splits.train, self.cfg["ridge_alphas"],
                                  self.cfg["ridge_halflives"], self.n_folds, self.delay, columns, not self.centred)
            evidence = fold_forecasts(t, self.every, self.y, self.z, self.prior, columns, choice,
                                      self.own_alpha, self.n_folds, self.delay, centre=self.centred)
            for part, (_, _, comps) in zip(extra, evidence):
                part[family] = comps["ridge"]
            x = self.every[:, keep(self.model_columns)]
            w, b = fit_ridge(x, self.y, choice.alpha, t.splits.train, choice.halflife, not self.centred)
            extra[-1][family], holdout[family] = x[t.splits.val] @ w + b, x[t.splits.holdout] @ w + b
        return {**self.score(holdout=holdout, fit=Stack.fit, extra=extra), "families": len(holdout)}

    def families(self) -> dict:
        chosen = greedy_families(self)
        result = self._ridge_variant(self.y, lambda cols: cols[np.isin(self._family(cols), list(chosen))])
        return {**result, "families": sorted(chosen)}

    def _family(self, cols: np.ndarray) -> np.ndarray:
        return np.array([self.tensors.feature_names[c].rsplit("__", 1)[-1] for c in cols])


def widest_within_margin(options: dict, margin: float):
    """Among the ridge's candidate inputs whose fold mean is within `margin` of the best, the one
    reading the most: every input, then the larger count, then a named candidate."""
    best = max(o.mean_sharpe for o in options.values())
    close = [c for c, o in options.items() if o.mean_sharpe >= best - margin]
    return max(close, key=lambda c: (c == 0, c if isinstance(c, int) else -1))


def own_per_target_fit(z: np.ndarray, y: np.ndarray, rows: np.ndarray, alpha: float) -> np.ndarray:
    """Each target's ridge (targets x slots) of its standardised labels y on its own inputs z
    (rows x targets x slots) over `rows`, both centred on those rows; penalty alpha times the rows."""
    coef = np.zeros((z.shape[1], z.shape[2]))
    for j in range(z.shape[1]):
        target = y[rows, j]
        keep = np.isfinite(target)
        if keep.sum() <= z.shape[2] + 1:
            continue
        x = z[rows[keep], j]
        x = x - x.mean(axis=0)
        coef[j] = np.linalg.solve(x.T @ x + alpha * keep.sum() * np.eye(z.shape[2]), x.T @ (target[keep] - target[keep].mean()))
    return coef


def own_per_target_forecast(z: np.ndarray, coef: np.ndarray, fit_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`own_per_target_fit`'s forecasts of `rows`, less each target's mean forecast over `fit_rows`."""
    return own.predict(z[rows], coef, own.offset(z[fit_rows], coef))


def low_rank(path: _RidgePath, alpha: float, ranks, intercept: bool = True) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The ridge of `path` at `alpha`, its weights W (inputs x targets) projected on the r leading
    eigenvectors Q_r of W' X'X W (the fitted values' directions across targets): W Q_r Q_r',
    with intercepts, for each r in `ranks` (0: W itself)."""
    w, _ = path.fit(alpha)
    gram = ((w.T @ path.v) * np.maximum(path.s, 0.0)) @ (path.v.T @ w)
    q = np.linalg.eigh(gram)[1][:, ::-1]
    out = {}
    for r in ranks:
        wr = w if r == 0 else w @ q[:, :r] @ q[:, :r].T
        out[r] = (wr, (path.y_mean if intercept else 0.0) - path.x_mean @ wr)
    return out


def penalised_fit(components: dict, labels: np.ndarray, lags: np.ndarray, max_weight: float,
                  penalty: float) -> blend.Blend:
    """`blend.fit` per lag with `penalty` * rows * w^2 added for every weight but the prior's
    (inf: the prior alone)."""
    if penalty == np.inf:
        return blend.prior_alone(lags, max_weight)
    y = blend.centred_ranks(labels)
    scaled = {n: blend.standardise(components[n]) for n in blend.COMPONENTS}
    weights = {}
    for lag in sorted({int(k) for k in lags}):
        cols = np.flatnonzero(lags == lag)
        target = y[:, cols].ravel()
        x = np.stack([scaled[n][:, cols].ravel() for n in blend.COMPONENTS], axis=1)
        keep = np.isfinite(target)
        x, target = x[keep], target[keep]
        others = [i for i, n in enumerate(blend.COMPONENTS) if n != "prior"]
        ridge = np.zeros((len(others), x.shape[1]))
        ridge[np.arange(len(others)), others] = np.sqrt(penalty * len(target))
        w = blend.bounded_least_squares(np.vstack([x, ridge]), np.concatenate([target, np.zeros(len(others))]),
                                        max_weight)
        if not w.any():
            w[blend.COMPONENTS.index("prior")] = 1e-3 * max_weight
        weights[lag] = [float(v) for v in w]
    return blend.Blend(weights, max_weight)


def cross_validated_shrink(components: dict, labels: np.ndarray, lags: np.ndarray, max_weight: float,
                           sizes: list[int], penalties, margin: bool, scheme: str, prior_z: float = -np.inf):
    """The penalty (see `penalised_fit`) whose blend scores the best Sharpe over the evidence's
    parts (consecutive row blocks of `sizes`, oldest first), each part forecast by weights fit on
    other parts: every other part (`scheme` "loo"), the parts before it ("expanding", every part
    but the first forecast), or the parts before the last ("last", the last part alone
    forecast). With `margin`, the largest penalty within 1/sqrt(days scored) of the best.
    Returns the blend fit on every part with it, and each penalty's Sharpe over the parts
    forecast."""
    edges = np.cumsum([0] + list(sizes))
    score = {}
    for penalty in penalties:
        forecast = np.full(labels.shape, np.nan)
        for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
            if scheme == "loo":
                rest = np.r_[0:a, b:len(labels)]
            elif k == 0 or (scheme == "last" and k < len(sizes) - 1):   # "expanding" or "last"
                continue
            else:
                rest = np.arange(a)
            fitted = penalised_fit({n: c[rest] for n, c in components.items()}, labels[rest], lags, max_weight,
                                   penalty)
            forecast[a:b] = fitted.combine({n: c[a:b] for n, c in components.items()}, lags)
        scored = np.isfinite(forecast).all(axis=1)
        daily = metric.daily_rank_corr(labels[scored], forecast[scored], strict=False)
        daily = daily[np.isfinite(daily)]
        score[penalty] = (float(daily.mean() / daily.std()), daily.size)
    if np.inf in score and len(score) > 1 and score[np.inf][0] < prior_z / np.sqrt(score[np.inf][1]):
        score_of_prior = score.pop(np.inf)                # the prior alone scores within noise of nothing
    else:
        score_of_prior = None
    best = max(score, key=lambda k: score[k][0])
    pick = best
    if margin:
        pick = max(k for k in score if score[k][0] >= score[best][0] - 1 / np.sqrt(score[best][1]))
    if score_of_prior is not None:
        score[np.inf] = score_of_prior
    cv = {str(k): round(v[0], 4) for k, v in score.items()} | {"penalty": str(pick)}
    return penalised_fit(components, labels, lags, max_weight, pick), cv


def sharpe_weights(components: dict, labels: np.ndarray, lags: np.ndarray, max_weight: float) -> blend.Blend:
    """Weights per lag (>= 0, the largest `max_weight`) that maximise the Sharpe ratio of the
    blend's daily covariance with the label ranks, r[d] = sum_(c, l) w[c, l] s[d, c, l], where
    s[d, c, l] is the mean over the day's labelled targets of lag l of the standardised
    component c times the centred label rank. The direction of w >= 0 with the highest mean / std
    of r is that of the non-negative least squares of a column of ones on s (a constant regressed
    on returns, Britten-Jones 1999, on the cone w >= 0)."""
    from scipy.optimize import nnls

    y = blend.centred_ranks(labels)
    days = np.isfinite(y).sum(axis=1) > 1
    y, count = np.nan_to_num(y[days]), np.isfinite(labels[days]).sum(axis=1)
    values = sorted({int(k) for k in lags})
    scores = np.stack([np.stack([(blend.standardise(components[name])[days] * y)[:, lags == lag].sum(axis=1) / count
                                 for lag in values], axis=1) for name in blend.COMPONENTS], axis=1)
    coef, _ = nnls(scores.reshape(scores.shape[0], -1), np.ones(scores.shape[0]))
    w = coef.reshape(len(blend.COMPONENTS), len(values))
    w = w * (max_weight / w.max()) if w.max() > 0 else w
    weights = {}
    for j, lag in enumerate(values):
        v = w[:, j].copy()
        if not v.any():
            v[blend.COMPONENTS.index("prior")] = 1e-3 * max_weight
        weights[lag] = [float(x) for x in v]
    return blend.Blend(weights=weights, max_weight=max_weight)


class Stack:
    """Any set of components, each standardised daily across all targets, weighted per lag by
    the least squares of the centred label ranks under 0 <= w <= max_weight (as `blend.fit`,
    solved by `scipy.optimize.lsq_linear` for more than four components)."""

    def __init__(self, names: list[str], weights: dict[int, np.ndarray]):
        self.names, self.weights = names, weights

    @classmethod
    def fit(cls, components: dict, labels: np.ndarray, lags: np.ndarray, max_weight: float) -> "Stack":
        from scipy.optimize import lsq_linear

        y, names = blend.centred_ranks(labels), list(components)
        scaled = [blend.standardise(components[n]) for n in names]
        weights = {}
        for lag in sorted({int(k) for k in lags}):
            target = y[:, lags == lag].ravel()
            keep = np.isfinite(target)
            x = np.stack([c[:, lags == lag].ravel() for c in scaled], axis=1)[keep]
            weights[lag] = lsq_linear(x, target[keep], bounds=(0.0, max_weight)).x
        return cls(names, weights)

    def combine(self, components: dict, lags: np.ndarray) -> np.ndarray:
        out = 0.0
        for i, name in enumerate(self.names):
            per_target = np.zeros(len(lags))
            for lag, w in self.weights.items():
                per_target[lags == lag] = w[i]
            out = out + per_target * blend.standardise(components[name])
        return out


def greedy_families(p: Project) -> set[str]:
    """Feature families added one at a time, each the one whose ridge (best penalty and
    half-life) has the highest mean Sharpe over the folds, while that mean rises by more than
    GREEDY_GAIN."""
    t = p.tensors
    names = {f for cols in p.fold_columns for f in p._family(cols)}

    def fold_mean(chosen: set[str]) -> float:
        columns = [cols[np.isin(p._family(cols), list(chosen))] for cols in p.fold_columns]
        if not all(cols.size for cols in columns):
            return -np.inf
        choice = select_ridge(p.every, p.y, t.raw_labels, t.splits.train, p.cfg["ridge_alphas"],
                              p.cfg["ridge_halflives"], p.n_folds, p.delay, columns, not p.centred)
        return max(entry["mean_sharpe"] for entry in choice.scores)

    chosen, best = set(), -np.inf
    while names - chosen:
        score, family = max((fold_mean(chosen | {f}), f) for f in sorted(names - chosen))
        if score <= best + GREEDY_GAIN:
            break
        chosen, best = chosen | {family}, score
    return chosen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="the --work folder of bench/quality.py (finished projects)")
    p.add_argument("--markets", default=None, help="comma-separated (default: every project in --work)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--every", type=int, default=10, help="holdout days between the online variant's refits")
    p.add_argument("--evidence-folds", type=int, default=2, help="folds the fold_transformer variant forecasts")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "component_lab.json"))
    args = p.parse_args()
    work = Path(args.work)
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"component_lab: unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    start, table = time.perf_counter(), {}
    for market, root in finished_projects(work, args.markets, "component_lab"):
        project = Project(root)
        base = project.score()
        if abs(base["model"] - project.reported) > 1e-3:
            raise SystemExit(f"component_lab: {market}: rebuilt blend scores {base['model']:.4f}, the project "
                             f"reported {project.reported:.4f}; is the project stale?")
        row = {}
        for name in variants:
            row[name] = (base if name == "base" else project.online(args.every) if name == "online"
                         else project.fold_transformer(args.evidence_folds) if name == "fold_transformer"
                         else project.fold_transformer(args.evidence_folds, False) if name == "fold_only"
                         else project.levels_variant() if name == "levels"
                         else project.fallback_variant() if name == "fallback"
                         else project.weigh_variant() if name == "weigh"
                         else project.per_day(widest=True) if name == "per_day_widest"
                         else project.shrunk(GATE, True, "loo") if name == "gate"
                         else project.shrunk(GATE, True, "expanding") if name == "gate_wf"
                         else project.shrunk(GATE, True, "last") if name == "gate_last"
                         else project.shrunk(SHRINKS, False, "loo") if name == "shrink"
                         else project.shrunk(SHRINKS, False, "expanding") if name == "shrink_wf"
                         else project.shrunk(GATE, True, "loo", blend.PRIOR_Z) if name == "gate_sig"
                         else getattr(project, name)())
        table[market] = row
        print(f"{market:10s} " + "  ".join(f"{v} {r['model']:+.3f} (ridge {r['ridge']:+.3f}, own {r['own']:+.3f})"
                                          for v, r in row.items()), flush=True)
    sums = {v: round(sum(table[m][v]["model"] for m in table if m != "null"), 3) for v in variants}
    print("sum of the model over the markets but null: " + "  ".join(f"{v} {s:+.3f}" for v, s in sums.items()))
    result = {"markets": table, "sums": sums, "every": args.every, "evidence_folds": args.evidence_folds,
              "wall_s": round(time.perf_counter() - start)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
