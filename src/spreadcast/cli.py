"""Shared entry-point behaviour of the stage scripts."""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import yaml

from spreadcast import io
from spreadcast.errors import SpreadcastError

TRACEBACK_ENV = "SPREADCAST_TRACEBACK"


class StageParser(argparse.ArgumentParser):
    """Arguments of a stage; those declared with `add_output` must lie in the artifact folder.

    The artifact folder is `artifacts/` beside the parameters file. After parsing, every write
    of the process through `spreadcast.io` is confined to it, so neither a parameter value nor
    a dataset can make a stage write elsewhere.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._outputs: list[str] = []
        self._inputs: list[str] = []

    def add_output(self, flag: str, **kwargs) -> None:
        action = self.add_argument(flag, required=True, **kwargs)
        self._outputs.append(action.dest)

    def add_input(self, flag: str, **kwargs) -> None:
        """A path the stage reads; a missing one stops it at once, naming the stage that makes it."""
        kwargs.setdefault("required", "default" not in kwargs)
        action = self.add_argument(flag, **kwargs)
        self._inputs.append(action.dest)

    def parse_args(self, args=None, namespace=None):
        ns = super().parse_args(args, namespace)
        for dest in self._inputs:
            path = getattr(ns, dest)
            if not Path(path).exists():
                raise MissingInput(f"--{dest} {path}: not found{made_by(path, Path(ns.params).resolve().parent)}")
        root = Path(ns.params).resolve().parent / "artifacts"
        io.confine_writes(root)
        for dest in self._outputs:
            io.check_writable(getattr(ns, dest), f"--{dest}")
        return ns


class MissingInput(SpreadcastError):
    """An input of a stage does not exist."""


def made_by(path: str, root: Path) -> str:
    """'; it is made by stage X (dvc repro X)' when the pipeline beside `root` declares `path`
    (or a folder holding it) as an output, else ''."""
    try:
        stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
        target = Path(path).resolve().relative_to(root.resolve()).as_posix()
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return ""
    for name, stage in stages.items():
        for out in stage.get("outs", []):
            out = next(iter(out)) if isinstance(out, dict) else out
            pattern = re.escape(out).replace(re.escape("${item.lag}"), r"(?P<lag>\d+)")
            found = re.match(pattern + r"(/|$)", target)
            if found:
                stage_name = f"{name}@{found.group('lag')}" if "lag" in found.groupdict() else name
                return f"; it is made by stage '{stage_name}' (dvc repro {stage_name})"
    return ""


def parser(doc: str | None) -> StageParser:
    p = StageParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    p.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    return p


def run(name: str, main: Callable[[], None]) -> None:
    """Run a stage; any failure becomes one line on stderr and a non-zero exit status.

    A known problem (`SpreadcastError`) exits with 1, an interruption with 130, and an
    unexpected exception with 2; set SPREADCAST_TRACEBACK=1 to see the latter's traceback.
    """
    start = time.perf_counter()
    try:
        main()
    except SpreadcastError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{name}: interrupted; nothing was written in place of its outputs", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # the last resort of an entry point: one line, not a stack trace
        if os.environ.get(TRACEBACK_ENV):
            traceback.print_exc()
        where = traceback.extract_tb(exc.__traceback__)[-1]
        print(f"{name}: unexpected error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              f"(at {Path(where.filename).name}:{where.lineno}; {TRACEBACK_ENV}=1 shows the traceback)",
              file=sys.stderr)
        sys.exit(2)
    if os.environ.get("RANK", "0") == "0":      # one line, not one per torchrun worker
        print(f"{name}: done in {time.perf_counter() - start:.1f}s", flush=True)
