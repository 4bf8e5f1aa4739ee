"""An import inside a function says why in a comment (read from the source, AST).

Imports belong at the top of the module; one is deferred into a function only where its start-up cost
(torch, Streamlit, scikit-learn) or an optional extra justifies it, and the comment says which. The
comment sits on the import's line or the line above; one comment covers a block of consecutive imports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from datasets.settings import REPO_ROOT

FOLDERS = ("datasets", "training", "inspection", "dashboard", "steel", "bench", "tests")
Imports = (ast.Import, ast.ImportFrom)
Scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def _python_files() -> Iterator[Path]:
    for folder in FOLDERS:
        yield from sorted((REPO_ROOT / folder).rglob("*.py"))


def _commented(lines: list[str], node: ast.stmt) -> bool:
    end = node.end_lineno or node.lineno
    on_it = any("#" in lines[i - 1] for i in range(node.lineno, end + 1))
    return on_it or (node.lineno > 1 and lines[node.lineno - 2].lstrip().startswith("#"))


def _bodies(node: ast.AST) -> Iterator[list[ast.stmt]]:
    for name in ("body", "orelse", "finalbody"):
        body = getattr(node, name, None)
        if isinstance(body, list):
            yield body


def uncommented_deferred_imports(source: str) -> list[int]:
    """Line numbers of imports nested in a function with no reason comment (see the module docstring)."""
    lines = source.splitlines()
    found: list[int] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for body in _bodies(node):
            block_ok: bool | None = None  # whether the import block running into this statement is explained
            for stmt in body:
                if isinstance(stmt, Imports) and in_function:
                    block_ok = bool(block_ok) or _commented(lines, stmt)
                    if not block_ok:
                        found.append(stmt.lineno)
                else:
                    block_ok = None
        for child in ast.iter_child_nodes(node):
            visit(child, in_function or isinstance(child, Scopes))

    visit(ast.parse(source), False)
    return found


def test_an_import_inside_a_function_without_a_reason_is_found() -> None:
    source = (
        "import json\n\n"
        "def a():\n    import torch\n\n"
        "def b():\n    # torch is heavy: only b needs it\n    import torch\n    from x import y\n\n"
        "def c():\n    import onnx  # an optional extra\n\n"
        "def d():\n    if True:\n        import yaml\n"
    )
    assert uncommented_deferred_imports(source) == [4, 16]


def test_every_import_inside_a_function_says_why() -> None:
    bare = [
        f"{path.relative_to(REPO_ROOT)}:{line}"
        for path in _python_files()
        for line in uncommented_deferred_imports(path.read_text(encoding="utf-8"))
    ]
    assert not bare, (
        "imports inside functions without a reason comment (move them to the top):\n" + "\n".join(bare)
    )
