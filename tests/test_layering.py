"""Import direction (DESIGN.md): `sw` and `models` never import Amaranth, so the scheduler and
cost model work without any HDL tool."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import sparsa.models
import sparsa.sw


@pytest.mark.parametrize("package", [sparsa.sw, sparsa.models], ids=["sw", "models"])
def test_no_amaranth_import(package):
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
