"""Amaranth hardware of sparsa: the N:M sparse PE and the systolic array."""

from .array import SystolicArray
from .pe import SparsePE

__all__ = ["SparsePE", "SystolicArray"]
