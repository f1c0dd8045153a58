"""Where sparsa keeps files of its own: the cache root, and the mode of the files it writes.

One definition for every package (hw, sim, models may all import the root modules).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_dir", "umask"]

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
