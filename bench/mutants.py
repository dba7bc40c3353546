"""Planted defects the test suite must catch: each mutant is applied to a copy of the
repository and the tests that guard against it are run there; they must fail.

usage: python bench/mutants.py [--only NAME,...] [--no-control] [--out bench/results/mutants.json]

First a control run (the same tests on the unchanged copy) must pass, or the table would mean
nothing. Prints a table (mutant, tests run, killed) and writes
`{"mutants": [{"name", "killed", "tests", "seconds"}], "control_passed", "wall_s"}`; exits 1 if any
mutant survives (or the control fails).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str          # file in the repository
    before: str        # exact text, present once
    after: str
    tests: tuple[str, ...]


MUTANTS = [
    Mutant("label revealed one day early", "src/spreadcast/data/targets.py",
           "    return label_date_id + lag + 1\n", "    return label_date_id + lag\n",
           ("tests/test_targets.py::test_reveal_rule",
            "tests/test_features.py::test_revealed_labels_enter_on_their_publication_day",
            "tests/test_serve.py::test_served_labels_are_exactly_the_published_ones")),
    Mutant("feature builder reveals a label one day early", "src/spreadcast/features/engineer.py",
           "        shift = publication_date(0, t.lag)", "        shift = t.lag",
           ("tests/test_features.py::test_revealed_labels_enter_on_their_publication_day",)),
    Mutant("serving accepts a label one day early", "src/spreadcast/serve/server.py",
           "        ok[ok] &= is_revealed(keys[ok, 1], lag, keys[ok, 0])",
           "        ok[ok] &= keys[ok, 1] + lag <= keys[ok, 0]",
           ("tests/test_serve.py::test_served_labels_are_exactly_the_published_ones",)),
    Mutant("scaling fit on every row", "stages/scale.py",
           "scaling.fit(matrix[splits.train], names, data.labels[splits.train],",
           "scaling.fit(matrix, names, data.labels,",
           ("tests/test_lookahead.py::test_features_and_windows_unchanged_by_later_data",)),
    Mutant("a feature using tomorrow's price", "src/spreadcast/features/engineer.py",
           "        logv = np.log(values[idx])\n",
           "        logv = np.log(np.append(values[idx][1:], values[idx][-1:]))\n",
           ("tests/test_features.py::test_features_have_no_look_ahead",
            "tests/test_lookahead.py::test_features_and_windows_unchanged_by_later_data")),
    Mutant("serving drops the revealed labels", "src/spreadcast/serve/server.py",
           "                self.revealed = pl.concat([kept, incoming])\n",
           "                self.revealed = kept\n",
           ("tests/test_serve.py::test_served_labels_are_exactly_the_published_ones",)),
    Mutant("serving history cut shorter than the window", "src/spreadcast/serve/server.py",
           "TAIL_DAYS = 512\n", "TAIL_DAYS = 4\n",
           ("tests/test_serve.py::test_replay_reproduces_the_submission",)),
    Mutant("DDP without gradient averaging", "src/spreadcast/training/distributed.py",
           "    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)\n",
           "    return model\n",
           ("tests/test_distributed.py",)),
    Mutant("metric with ddof=1", "src/spreadcast/evaluation/metric.py",
           "def sharpe(daily: np.ndarray) -> float:\n    std = daily.std()\n",
           "def sharpe(daily: np.ndarray) -> float:\n    std = daily.std(ddof=1)\n",
           ("tests/test_metric.py",)),
    Mutant("training reads the holdout rows", "src/spreadcast/training/loop.py",
           "                    train_rows=tensors.splits.train, val_rows=tensors.splits.val,",
           "                    train_rows=np.concatenate([tensors.splits.train, tensors.splits.holdout]),\n"
           "                    val_rows=tensors.splits.val,",
           ("tests/test_training.py::test_training_pruning_and_finetuning_never_read_holdout_rows",)),
    Mutant("checkpoints loaded with pickle", "src/spreadcast/model/checkpoint.py",
           "torch.load(weights, map_location=\"cpu\", weights_only=True)",
           "torch.load(weights, map_location=\"cpu\", weights_only=False)",
           ("tests/test_checkpoint.py::test_pickled_code_with_a_valid_hash_is_refused",)),
    Mutant("the refit model not served", "src/spreadcast/serve/server.py",
           "        self.heads = [load_head(served_folder(root, lag), lag) for lag in self.lags]\n",
           "        self.heads = [load_head(root / \"finetune\" / f\"lag{lag}\", lag) for lag in self.lags]\n",
           ("tests/test_serve.py::test_refit_models_are_the_ones_served",)),
]


def copy_repository(dest: Path) -> Path:
    """The working tree's tracked and untracked (not ignored) files, as they are now."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def apply(root: Path, mutant: Mutant) -> None:
    path = root / mutant.path
    text = path.read_text()
    if text.count(mutant.before) != 1:
        raise SystemExit(f"mutants: {mutant.name}: {mutant.path} no longer holds the text to change "
                         f"exactly once; update the mutant")
    path.write_text(text.replace(mutant.before, mutant.after))


def run_tests(root: Path, tests: tuple[str, ...]) -> tuple[int, float, str]:
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "DVC_NO_ANALYTICS": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                          cwd=root, env=env, capture_output=True, text=True)
    return proc.returncode, time.perf_counter() - start, proc.stdout[-1500:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", help="comma-separated mutant names (default: all)")
    p.add_argument("--no-control", action="store_true", help="skip the unmutated control run")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "mutants.json"))
    args = p.parse_args()
    chosen = MUTANTS
    if args.only:
        wanted = {n.strip() for n in args.only.split(",")}
        chosen = [m for m in MUTANTS if m.name in wanted]
        if len(chosen) != len(wanted):
            raise SystemExit(f"mutants: unknown name in {sorted(wanted)}; known: {[m.name for m in MUTANTS]}")
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="spreadcast-mutants-"))
    control_passed = None
    try:
        if not args.no_control:
            tests = tuple(sorted({t for m in chosen for t in m.tests}))
            print(f"control: {len(tests)} test selections on the unchanged copy", flush=True)
            code, seconds, tail = run_tests(copy_repository(work / "control"), tests)
            control_passed = code == 0
            print(f"control: {'passed' if control_passed else 'FAILED'} in {seconds:.0f} s", flush=True)
            if not control_passed:
                print(tail)
        rows = []
        for i, mutant in enumerate(chosen):
            root = copy_repository(work / f"m{i}")
            apply(root, mutant)
            code, seconds, tail = run_tests(root, mutant.tests)
            killed = code == 1                           # tests ran and failed (not a collection error)
            rows.append({"name": mutant.name, "killed": killed, "tests": list(mutant.tests),
                         "seconds": round(seconds, 1)})
            print(f"{mutant.name}: {'killed' if killed else f'SURVIVED (pytest exit {code})'} "
                  f"in {seconds:.0f} s", flush=True)
            if not killed:
                print(tail)
            shutil.rmtree(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| mutant | tests run | killed |\n|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {', '.join(t.split('/')[-1] for t in r['tests'])} | {'yes' if r['killed'] else 'NO'} |")
    out = {"mutants": rows, "control_passed": control_passed, "wall_s": round(time.perf_counter() - start, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    survived = [r["name"] for r in rows if not r["killed"]]
    if survived or control_passed is False:
        raise SystemExit(f"mutants: survived: {survived}" if survived else "mutants: the control run failed")
    print(f"mutants: all {len(rows)} killed in {out['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
