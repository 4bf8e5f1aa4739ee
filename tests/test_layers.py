"""The layers run one way and modules import no cycle, read from the source (AST) of every module.

``datasets`` <- ``training`` <- ``inspection``; ``dashboard`` stands on ``inspection.storage`` and
``datasets`` only and never loads torch; ``steel`` (the command line) is the one package above all.
Every ``import`` counts, also those inside functions or under ``TYPE_CHECKING``: a deferred import is
still a dependency. The dashboard's *run-time* freedom from torch is checked in
``tests/dashboard/test_cli.py`` by importing it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from datasets.settings import REPO_ROOT

PACKAGES = ("datasets", "training", "inspection", "dashboard", "steel")

# package -> top-level names (or dotted prefixes) it must not import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "datasets": ("training", "inspection", "dashboard", "steel"),
    "training": ("inspection", "dashboard", "steel"),
    "inspection": ("dashboard", "steel"),
    "dashboard": ("torch", "torchvision", "training", "steel"),
}
DASHBOARD_MAY_USE = "inspection.storage"

# Import cycles known and owned elsewhere: {frozenset of the cycle's modules: reason}. Each is xfailed
# with its reason, so the test starts failing (XPASS is strict) the moment the cycle is gone.
KNOWN_CYCLES: dict[str, str] = {}


# Upward imports known and owned elsewhere: {"file imports name" without the line: reason}, xfailed
# strictly like the cycles.
KNOWN_VIOLATIONS: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class Import:
    importer: str  # dotted module name
    imported: str  # dotted name as resolved (a module, or a package for `from pkg import name`)
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _source_files() -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:  # Alembic revisions import only alembic/sqlalchemy
                yield path


MODULES = {_module_name(p): p for p in _source_files()}


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute dotted name of a ``from ... import`` (relative imports resolved against ``module``)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(module: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, path.name == "__init__.py")
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield Import(module, sub if sub in MODULES else target, node.lineno)


ALL_IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_violations(imports: list[Import]) -> list[str]:
    """``importer:line imports name`` for every import that runs up (or across) the layers."""
    found = []
    for imp in imports:
        package = imp.importer.split(".")[0]
        banned = FORBIDDEN.get(package, ())
        bad = any(_within(imp.imported, b) for b in banned)
        if package == "dashboard" and _within(imp.imported, "inspection"):
            bad = bad or not _within(imp.imported, DASHBOARD_MAY_USE)
        if bad:
            found.append(f"{MODULES[imp.importer].relative_to(REPO_ROOT)}:{imp.line} imports {imp.imported}")
    return found


def import_cycles(imports: list[Import]) -> list[list[str]]:
    """Strongly connected groups of two or more project modules (Tarjan), each sorted, in sorted order.

    Hand-written (30 lines) rather than a dependency: networkx is only a transitive dependency of torch.
    """
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in imports:
        if imp.imported in MODULES and imp.imported != imp.importer:
            graph[imp.importer].add(imp.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def _known_violation(violation: str) -> str | None:
    file, _, rest = violation.partition(":")
    return KNOWN_VIOLATIONS.get(f"{file} {rest.split(' ', 1)[1]}")


def _known_reason(group: list[str]) -> str | None:
    for prefix, reason in KNOWN_CYCLES.items():
        if all(_within(m, prefix) for m in group):
            return reason
    return None


def test_every_layer_package_is_found() -> None:
    assert {m.split(".")[0] for m in MODULES} == set(PACKAGES)
    assert "inspection.cli" in MODULES and "dashboard.cli" in MODULES and "steel.cli" in MODULES


VIOLATIONS = layer_violations(ALL_IMPORTS)


@pytest.mark.parametrize(
    "violation",
    [
        pytest.param(v, marks=pytest.mark.xfail(reason=r, strict=True)) if (r := _known_violation(v)) else v
        for v in VIOLATIONS
    ]
    or [""],
    ids=lambda v: v or "none",
)
def test_no_module_imports_a_layer_above_its_own(violation: str) -> None:
    assert not violation, violation


def test_the_checker_catches_an_upward_import_and_a_cycle() -> None:
    """The rules above must be able to fail: fed the old ``inspection.cli -> dashboard.cli`` import."""
    upward = Import("inspection.cli", "dashboard.cli", 8)
    assert layer_violations([upward]) == ["inspection/cli.py:8 imports dashboard.cli"]
    dashboard_daemon = Import("dashboard.app", "inspection.daemon", 3)
    assert layer_violations([dashboard_daemon, Import("dashboard.app", "inspection.storage.schema", 4)]) == [
        "dashboard/app.py:3 imports inspection.daemon"
    ]
    loop = [Import("training.cli", "training.bundle", 1), Import("training.bundle", "training.cli", 1)]
    assert import_cycles(loop) == [["training.bundle", "training.cli"]]


def test_the_steel_entry_point_has_every_command() -> None:
    from steel.cli import app  # every command's module (~1 s): the other tests only read source

    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    groups = {g.name for g in app.registered_groups}
    assert {"train", "eval", "predict", "export", "inspect", "retrain", "dashboard"} <= names
    assert {"dashboard-hash-password"} <= names and {"data", "models"} <= groups


CYCLES = import_cycles(ALL_IMPORTS)


@pytest.mark.parametrize(
    "group",
    [
        pytest.param(g, marks=pytest.mark.xfail(reason=r, strict=True)) if (r := _known_reason(g)) else g
        for g in CYCLES
    ]
    or [[]],
    ids=lambda g: " <-> ".join(g) or "none",
)
def test_modules_import_no_cycle(group: list[str]) -> None:
    assert not group, f"import cycle: {' -> '.join(group)}"
