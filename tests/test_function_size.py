"""No function or method of the package is longer than about 80 lines (STYLE.md: a sign to
split). Lines are counted from ``def`` to the function's last line, docstring and comments
included, decorators not; a nested function counts on its own and inside its parent."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sparsa", "hw", "sim", "sw", "models")
MAX_LINES = 80

# Functions allowed to stay longer, as "<file> <qualified name>" (none today). Remove an entry
# once its function is short: the test fails on entries that no longer apply.
ALLOWED: set[str] = set()


def functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(qualified name, line count) of every function and method under ``tree``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + node.name, node.end_lineno - node.lineno + 1
            yield from functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.")
        else:
            yield from functions(node, prefix)


def function_lengths() -> dict[str, int]:
    """``"<file> <qualified name>"`` -> line count, for every module of the package folders."""
    lengths = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            rel = path.relative_to(ROOT).as_posix()
            for name, lines in functions(tree):
                lengths[f"{rel} {name}"] = lines
    return lengths


def test_no_function_over_the_limit():
    lengths = function_lengths()
    assert len(lengths) > 200, "the walk found too few functions: wrong ROOT?"
    too_long = {name: n for name, n in lengths.items() if n > MAX_LINES and name not in ALLOWED}
    assert not too_long, f"functions over {MAX_LINES} lines (split them): " + ", ".join(
        f"{name} ({n})" for name, n in sorted(too_long.items()))


def test_allow_list_is_current():
    lengths = function_lengths()
    stale = sorted(name for name in ALLOWED if lengths.get(name, 0) <= MAX_LINES)
    assert not stale, f"allow-listed but missing or no longer over {MAX_LINES} lines: {stale}"


def test_counting():
    source = ("class A:\n"
              "    @property\n"
              "    def f(self):\n"
              "        def g():\n"
              "            pass\n"
              "\n"
              "        return g\n"
              "async def h(): pass\n")
    assert list(functions(ast.parse(source))) == [("A.f", 5), ("A.f.g", 2), ("h", 1)]
