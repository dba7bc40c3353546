"""Every stage lists under `deps` every package file its script runs, so DVC never calls a
stale output up to date (a changed module re-runs the stages that import it)."""
import ast
from pathlib import Path

import yaml

from conftest import ROOT

SRC = ROOT / "src"


def module_file(name: str) -> Path | None:
    """The file of a `spreadcast...` module or package, if it is one."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_files(script: Path) -> set[Path]:
    """Package files `script` imports, directly or through other package modules, with the
    `__init__.py` of every package on the way (Python runs those too)."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if not name.startswith("spreadcast"):
                    continue
                parts = name.split(".")
                for i in range(1, len(parts) + 1):
                    found = module_file(".".join(parts[:i]))
                    if found is not None and found not in seen:
                        seen.add(found)
                        todo.append(found)
    return seen


def stage_deps() -> dict[str, tuple[Path, list[str]]]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        script = next(w for w in stage["cmd"].split() if w.startswith("stages/") and w.endswith(".py"))
        out[name] = (ROOT / script, [d for d in stage.get("deps", []) if "$" not in d])
    return out


def test_every_imported_package_file_is_a_dependency():
    missing = {}
    for name, (script, deps) in stage_deps().items():
        covered = [ROOT / d for d in deps]
        assert script in covered, f"{name}: its script {script.relative_to(ROOT)} is not in deps"
        for path in sorted(imported_files(script)):
            if not any(path == d or d in path.parents for d in covered):
                missing.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert not missing, "dvc.yaml deps lack what these stages import:\n" + "\n".join(
        f"  {stage}: {', '.join(files)}" for stage, files in missing.items())


def test_the_walk_follows_imports_through_modules():
    """A control: the walk finds what a stage reaches only through another module."""
    scripts = stage_deps()
    found = {str(p.relative_to(ROOT)) for p in imported_files(scripts["ingest"][0])}
    assert "src/spreadcast/data/ingest.py" in found
    assert "src/spreadcast/config.py" in found and "src/spreadcast/errors.py" in found
    assert "src/spreadcast/__init__.py" in found
