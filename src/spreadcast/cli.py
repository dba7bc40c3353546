"""Shared entry-point behaviour of the stage scripts."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

from spreadcast.errors import SpreadcastError


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    p.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    return p


def run(name: str, main: Callable[[], None]) -> None:
    """Run a stage; a known problem becomes one line on stderr and exit status 1."""
    start = time.perf_counter()
    try:
        main()
    except SpreadcastError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"{name}: done in {time.perf_counter() - start:.1f}s", flush=True)
