"""Where sparsa keeps files of its own: the cache root, and the mode of the files it writes.

One definition for every package (hw, sim, models may all import the root modules), and the
one reader of the TOML data tables that ship inside them or that users bring instead.
"""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_dir", "read_table", "umask"]

CACHE_ENV = "SPARSA_CACHE_DIR"


def cache_dir(kind: str | None = None) -> Path:
    """``$SPARSA_CACHE_DIR`` (default ``~/.cache/sparsa``), or its ``kind`` folder: traced
    graphs and demo models (the root itself), ``area`` (synthesis results), ``native``
    (Verilated executables)."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "sparsa"
    return base / kind if kind else base


def umask() -> int:
    """The process's umask (read without changing it), so outputs get the usual modes rather
    than a temporary file's private 0600."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_table(package: str, default: str, path: str | Path | None, what: str,
               error: type[Exception]) -> tuple[dict, str]:
    """A TOML data table and its source: ``package``'s ``data/default`` when ``path`` is None,
    else the user's file at ``path``. A file that cannot be read, or is not TOML, raises
    ``error`` with one line naming the file and ``what`` it should be (e.g. "energy table")."""
    if path is None:
        text, source = resources.files(package).joinpath("data", default).read_text(), default
    else:
        source = str(path)
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise error(f"cannot read {what} {source!r}: {reason}") from None
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as e:
        raise error(f"{what} {source}: malformed TOML: {e}") from None
