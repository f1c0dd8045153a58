"""Exact Pareto fronts and the best point per objective (smaller is better after signing).

The front is the brute-force non-dominated filter: a point is on it unless another point is no
worse in every objective and better in one. Quadratic, exact, and fast enough for the tens of
thousands of points a sweep stores.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["best_index", "dominates", "pareto_indices"]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in at least one."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True))


def pareto_indices(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points, in input order (equal points all stay)."""
    return [i for i, p in enumerate(points)
            if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]


def best_index(points: Sequence[Sequence[float]], objective: int) -> int:
    """The point with the smallest value of one objective; ties go to the lexicographically
    smallest whole vector, then to the first."""
    if not points:
        raise ValueError("no points to choose from")
    return min(range(len(points)), key=lambda i: (points[i][objective], tuple(points[i]), i))
