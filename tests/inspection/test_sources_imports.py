"""The sources package has no import cycle (issue 10.2): ``inspection.sources`` (its ``open_source``)
imports the source modules, so they must import ``inspection.sources.base``, never the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from datasets.settings import REPO_ROOT

SOURCES = REPO_ROOT / "inspection" / "sources"
MODULES = sorted(p.stem for p in SOURCES.glob("*.py") if p.stem not in ("__init__", "base"))


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names, at any depth (function bodies too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "module",
    MODULES,
)
def test_a_source_module_imports_the_base_module_not_the_package(module: str) -> None:
    assert "inspection.sources" not in imported_modules(SOURCES / f"{module}.py")


def test_the_base_module_imports_no_source_module() -> None:
    assert not {m for m in imported_modules(SOURCES / "base.py") if m.startswith("inspection.sources")}
