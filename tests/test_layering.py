"""The import structure of DESIGN.md, read from the source (every import, also those inside
functions): the root modules (config, isa, nm) <- hw <- sim; root <- sw; root <- models; sw may
use models, never the reverse; `sw` and `models` never import `hw` or `sim`; nothing imports the
command line; and no import cycle between any two modules."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import sparsa
import sparsa.models
import sparsa.sw

# package -> the packages its modules may import ("root" is sparsa's own modules but the CLI)
ALLOWED = {
    "root": {"root"},
    "hw": {"root", "hw"},
    "models": {"root", "models"},
    "sw": {"root", "sw", "models"},
    "sim": {"root", "hw", "sim", "sw", "models"},
    "cli": {"root", "hw", "sim", "sw", "models", "cli"},
}
SUBPACKAGES = ("hw", "sim", "sw", "models", "cli")


def _modules() -> dict[str, Path]:
    """Every module of the distribution: dotted name -> file. The subpackages live in their own
    top-level folders (setuptools package-dir), so each is walked from its own path."""
    found = {"sparsa": Path(sparsa.__file__)}
    for package in ("sparsa", *(f"sparsa.{p}" for p in SUBPACKAGES)):
        module = importlib.import_module(package)
        found[package] = Path(module.__file__)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            found[info.name] = Path(info.module_finder.find_spec(info.name, None).origin)
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in SUBPACKAGES else "root"


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The sparsa modules ``name`` imports, resolved (``from pkg import module`` included)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            prefix = ".".join(base[: len(base) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (prefix, node.module or "") if p)
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_reads_the_whole_package(graph):
    assert {"sparsa.nm", "sparsa.config", "sparsa.cli", "sparsa.hw.accelerator",
            "sparsa.sw.cost", "sparsa.sim.golden_accel", "sparsa.models.zoo"} <= set(graph)
    assert "sparsa.nm" in graph["sparsa.sw.prune"]   # lazy and relative imports are resolved
    assert "sparsa.models.demo" in graph["sparsa.models.zoo"]


def test_package_directions(graph):
    bad = sorted(f"{a} imports {b}" for a, targets in graph.items() for b in targets
                 if _package(b) not in ALLOWED[_package(a)]
                 and not (a == "sparsa" and b.startswith("sparsa.")))
    assert not bad, "imports against DESIGN.md's directions:\n" + "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles(graph):
    # a package's __init__ importing its own modules (which import its siblings) is no cycle
    inits = {name for name in graph if name == "sparsa" or (name.count(".") == 1
             and name.split(".")[1] in SUBPACKAGES)}
    trimmed = {a: {b for b in targets if b not in inits} for a, targets in graph.items()}
    assert not _cycles(trimmed), f"import cycles: {_cycles(trimmed)}"


def test_the_cycle_check_finds_a_planted_cycle():
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert _cycles(planted) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", [sparsa.sw, sparsa.models], ids=["sw", "models"])
def test_no_amaranth_import(package):
    """`sw` and `models` run without Amaranth installed: importing them loads none of it."""
    modules = [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    assert modules, f"{package.__name__} has no modules to check"
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'amaranth')\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"importing {package.__name__} pulled in Amaranth modules: {out}"
