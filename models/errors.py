"""Errors raised by the model importers, the zoo and the loaders."""

from __future__ import annotations

__all__ = ["ModelImportError", "UnknownModelError"]


class ModelImportError(ValueError):
    """A model file or object cannot be turned into a layer graph (malformed, unsupported)."""


class UnknownModelError(ModelImportError):
    """A model name is not in the zoo."""
