"""Shared fixtures. Every random test logs its seed; ``SPARSA_SEED=<n>`` reruns with another."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

DEFAULT_SEED = 20240917
N_SEEDS = 4


def _seed_for(key: str) -> int:
    seed = int(os.environ.get("SPARSA_SEED", zlib.crc32(key.encode())))
    print(f"seed {seed} for {key} (set SPARSA_SEED to override)")
    return seed


@pytest.fixture
def seed_for():
    """``seed_for(key)``: ``SPARSA_SEED`` if set, else a fixed seed per key (reproducible CI),
    printed either way."""
    return _seed_for


@pytest.fixture(params=range(N_SEEDS), ids=lambda i: f"seed+{i}")
def seed(request) -> int:
    """Several seeds per test: ``SPARSA_SEED`` (or a fixed base) plus 0..N_SEEDS-1."""
    base = int(os.environ.get("SPARSA_SEED", DEFAULT_SEED))
    value = base + request.param
    print(f"seed = {value} (SPARSA_SEED={base} + {request.param})")
    request.node.user_properties.append(("seed", value))
    return value


@pytest.fixture
def rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)
