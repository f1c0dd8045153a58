"""What every subcommand shares: the configuration options, output paths checked before any work
and written all or nothing, and the help format.

An output directory is written into a hidden temporary directory beside it and renamed into place
at the end, replacing the previous one whole; a directory holding files sparsa did not write is
refused rather than replaced. A single output file is written beside its target and renamed. So
an output set is complete or absent, never half-written or mixed with an older one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sparsa.config import PRESETS, ArrayConfig, preset
from sparsa.files import umask
from sparsa.nm import parse_nm

__all__ = ["MARKER", "Parser", "UsageError", "add_command", "add_config_args", "add_prune_args",
           "check_output_dir", "check_output_file", "config_from_args", "load_model",
           "output_dir", "output_file", "prune_policy_from_args"]

# Written into every output directory; only directories carrying it are replaced.
MARKER = ".sparsa-output"


class UsageError(ValueError):
    """A command-line argument is unusable (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (with a pointer to ``--help``)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """States each option's default unless its help text already does or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS) \
                or action.option_strings == []:
            return text
        return f"{text} (default: %(default)s)"


def add_command(subparsers: argparse._SubParsersAction, name: str,
                help: str) -> argparse.ArgumentParser:
    """A subcommand parser with the shared help format; ``help`` is also its description."""
    return subparsers.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".",
                                 formatter_class=HelpFormatter)


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The array-configuration options every command shares."""
    group = parser.add_argument_group("array configuration")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--preset", default=None,
                        help=f"named configuration ({', '.join(PRESETS)}; default: 'default')")
    source.add_argument("--config", metavar="FILE", default=None,
                        help="configuration file (.toml or .json)")
    group.add_argument("--rows", type=int, help="PE rows (overrides the preset or file)")
    group.add_argument("--cols", type=int, help="PE columns (overrides the preset or file)")
    group.add_argument("--nm", metavar="N:M", help="sparsity pattern, e.g. 2:4 (overrides)")


def config_from_args(args: argparse.Namespace) -> ArrayConfig:
    cfg = ArrayConfig.from_file(args.config) if args.config else preset(args.preset or "default")
    changes: dict = {}
    if args.rows is not None:
        changes["rows"] = args.rows
    if args.cols is not None:
        changes["cols"] = args.cols
    if args.nm is not None:
        changes["n"], changes["m"] = parse_nm(args.nm)
    return cfg.replace(**changes) if changes else cfg


def load_model(spec: str, *, batch: int = 1, seq: int | None = None):
    """:func:`sparsa.models.load.load_graph` with a spinner: tracing a zoo model or a Hugging
    Face config, or training a demo model, takes a while on first use (zoo results are cached).
    ``batch`` and ``seq`` apply to the models traced here (zoo transformers, HF configs)."""
    from rich.console import Console

    from sparsa.models.load import load_graph

    with Console(stderr=True).status(f"loading {spec} (traced or trained on first use, then "
                                     "cached)"):
        return load_graph(spec, batch=batch, seq=seq)


def add_prune_args(parser: argparse.ArgumentParser, policy_help: str) -> None:
    """The pruning policy, the same options for every command that prunes or costs pruning."""
    group = parser.add_argument_group("pruning policy", policy_help)
    group.add_argument("--dense", action="append", default=[], metavar="LAYER",
                       help="keep this layer dense (repeatable)")
    group.add_argument("--prune-first-conv", action="store_true",
                       help="also prune the first convolution")
    group.add_argument("--prune-classifier", action="store_true",
                       help="also prune the classifier (the last weight layer)")


def prune_policy_from_args(args: argparse.Namespace):
    from sparsa.sw.prune import PrunePolicy

    return PrunePolicy(keep_first_conv=not args.prune_first_conv,
                       keep_classifier=not args.prune_classifier, dense=frozenset(args.dense))


def _check_parent(path: Path, option: str) -> None:
    """The nearest existing ancestor of ``path`` must be a directory we can write in."""
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{option} {str(path)!r}: {str(ancestor)!r} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {str(path)!r}: cannot write in {str(ancestor)!r}")


def check_output_dir(path: str | Path, option: str = "-o") -> Path:
    """Check an output directory before any work: absent, empty or written by sparsa before."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {str(path)!r}: expected a directory, but it is an existing "
                         "file")
    if path.is_dir() and any(path.iterdir()) and not (path / MARKER).is_file():
        raise UsageError(f"{option} {str(path)!r}: the directory holds files sparsa did not "
                         "write; give a new or empty directory (sparsa replaces its output "
                         "directories whole)")
    _check_parent(path, option)
    return path


def check_output_file(path: str | Path, suffix: str, option: str = "-o") -> Path:
    """Check an output file name before any work: the right suffix, not a directory."""
    path = Path(path)
    if path.suffix != suffix:
        raise UsageError(f"{option} {str(path)!r}: expected a file name ending in {suffix}")
    if path.is_dir():
        raise UsageError(f"{option} {str(path)!r}: expected a file, but it is a directory")
    _check_parent(path, option)
    return path


def _make_parents(path: Path) -> list[Path]:
    """Create the missing parents of ``path``; return them, innermost first."""
    made = []
    parent = path.absolute().parent
    while not parent.exists():
        made.append(parent)
        parent = parent.parent
    for directory in reversed(made):
        directory.mkdir()
    return made


def _remove_empty(directories: list[Path]) -> None:
    for directory in directories:
        with contextlib.suppress(OSError):
            directory.rmdir()


@contextlib.contextmanager
def output_dir(path: Path, command: str) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` whole."""
    made = _make_parents(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp",
                                    dir=path.absolute().parent))
    except BaseException:
        _remove_empty(made)
        raise
    try:
        yield tmp
        (tmp / MARKER).write_text(f"written by sparsa {command}; replaced whole by the next run\n")
        os.chmod(tmp, 0o777 & ~umask())
        if path.exists():
            old = tmp.with_suffix(".old")
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(made)
        raise


@contextlib.contextmanager
def output_file(path: Path) -> Iterator[Path]:
    """Yield a temporary file name beside ``path``; on success it is renamed to ``path``."""
    made = _make_parents(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix,
                                    dir=path.absolute().parent)
        os.close(fd)
    except BaseException:
        _remove_empty(made)
        raise
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        _remove_empty(made)
        raise
