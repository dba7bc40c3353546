"""Atomic, confined writes and small file helpers.

Every output is written to a temporary sibling and renamed into place, so a stage killed
part-way leaves either the previous output or nothing, never a file DVC would take as done.
A killed writer's temporary sibling is removed by the next write of the same path.

A stage confines its writes to its artifact folder (`confine_writes`, called by the stage
argument parser): a write anywhere else is refused before anything is created.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from spreadcast.errors import ConfigError

_WRITE_ROOT: Path | None = None


def confine_writes(root: str | Path | None) -> None:
    """Refuse, from now on, every write of this module outside `root` (None: no limit)."""
    global _WRITE_ROOT
    _WRITE_ROOT = None if root is None else Path(root).resolve()


def check_writable(path: str | Path, what: str | None = None) -> Path:
    """`path`, if writes may go there; symbolic links and `..` are resolved first."""
    path = Path(path)
    if _WRITE_ROOT is not None and not path.resolve().is_relative_to(_WRITE_ROOT):
        raise ConfigError(f"{what + ' ' if what else ''}{str(path)!r}: refusing to write outside "
                          f"the artifact folder {str(_WRITE_ROOT)!r}")
    return path


def _remove_stale(path: Path) -> None:
    """Remove temporary siblings of `path` left by writers that were killed."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = stale.name.removeprefix(f".{path.name}.").split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            (shutil.rmtree if stale.is_dir() else os.unlink)(stale)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only on success."""
    path = check_writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600 files
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder; it replaces `path` whole only on success."""
    path = check_writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())   # mkdtemp makes 0700 folders
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def save_arrays(folder: Path, **arrays: np.ndarray) -> None:
    """Arrays as .npy (loaded with allow_pickle=False, so nothing executes on load)."""
    check_writable(folder)
    for name, arr in arrays.items():
        np.save(folder / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)


def load_array(path: str | Path, mmap: bool = False) -> np.ndarray:
    return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
