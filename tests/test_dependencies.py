"""pyproject.toml declares what the code imports: every third-party module imported in src/ is a
runtime dependency or in an optional extra (imported where the feature runs, which names the
extra), every one imported in tests/ is a runtime or dev dependency, and no runtime dependency
goes unused."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Declared but never imported by name, with the reason.
USED_INDIRECTLY = {"pyarrow": "pandas' parquet engine, for the cache index"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(extra: str | None = None) -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return {normalise(re.match(r"[A-Za-z0-9._-]+", r)[0]) for r in requirements}


def imported(folder: Path) -> dict[str, str]:
    """Distribution name -> a file importing it, for the third-party imports under ``folder``."""
    local = {p.stem for p in folder.glob("*.py")} | {"ecgfoundry"}
    distributions = packages_distributions()
    found = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in local or top == "__future__":
                    continue
                for dist in distributions.get(top, [top]):
                    found.setdefault(normalise(dist), str(path.relative_to(REPO)))
    return found


def optional() -> set[str]:
    """What the optional extras other than dev declare (features that say how to get them)."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {d for name in extras["optional-dependencies"] if name != "dev" for d in declared(name)}


def test_src_imports_are_runtime_dependencies_or_extras() -> None:
    used = imported(REPO / "src")
    known = declared() | optional()
    missing = {dist: path for dist, path in used.items() if dist not in known}
    assert not missing, f"imported in src/ but not in [project] dependencies or extras: {missing}"


def test_test_imports_are_declared() -> None:
    known = declared() | declared("dev")
    missing = {dist: path for dist, path in imported(REPO / "tests").items() if dist not in known}
    assert not missing, f"imported in tests/ but not declared (dev extra?): {missing}"


def test_every_runtime_dependency_is_used() -> None:
    unused = declared() - set(imported(REPO / "src")) - set(USED_INDIRECTLY)
    assert not unused, f"declared but never imported in src/ (move to an extra?): {unused}"


def test_floors_cover_what_the_code_uses() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    floors = dict(re.match(r"([A-Za-z0-9._-]+)>=([\d.]+)", r).groups() for r in
                  project["dependencies"])  # fmt: skip
    version = {name: tuple(int(part) for part in v.split(".")) for name, v in floors.items()}
    assert version["numpy"] >= (2, 0)  # np._core
    assert version["torch"] >= (2, 5)  # torch.serialization.safe_globals
    # huggingface_hub.errors' HfHubHTTPError and LocalEntryNotFoundError (models/io.py)
    assert version["huggingface-hub"] >= (0, 25)
