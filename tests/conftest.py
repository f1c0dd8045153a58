"""Shared fixtures, and the seeding rule of every randomized test.

Every random stream is named by a key, usually the test's node id. Without ``SPARSA_SEED`` the
key alone fixes the seed, so CI is reproducible. ``SPARSA_SEED=<any integer>`` is combined with
the key, so each test and configuration still draws its own stream, and another integer draws
other streams. The seeds a test used go into its ``user_properties`` and into a "seeds" section
of its failure report, with the command that reruns it.
"""

from __future__ import annotations

import functools
import os
import shlex
import zlib

import numpy as np
import pytest

SEED_ENV = "SPARSA_SEED"
N_SEEDS = 4
_SEEDS = pytest.StashKey[list[tuple[str, int]]]()


def env_seed() -> int | None:
    """``SPARSA_SEED`` as an integer (any sign or size), or None when unset or empty."""
    raw = os.environ.get(SEED_ENV, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise pytest.UsageError(
            f"{SEED_ENV} must be an integer, not {os.environ[SEED_ENV]!r}") from None


def seed_for_key(key: str) -> int:
    """The seed of the random stream named ``key``, in [0, 2**32): the CRC-32 of the key, or of
    ``f"{SPARSA_SEED}:{key}"`` when ``SPARSA_SEED`` is set."""
    base = env_seed()
    text = key if base is None else f"{base}:{key}"
    return zlib.crc32(text.encode()) % 2**32


def record_seed(node: pytest.Item | pytest.Collector, key: str) -> int:
    """``seed_for_key(key)``, recorded on ``node`` (a test, or the module or class of a wider
    fixture) so the failure report of every test under it names the seed."""
    seed = seed_for_key(key)
    node.stash.setdefault(_SEEDS, []).append((key, seed))
    if isinstance(node, pytest.Item):
        node.user_properties.append(("seed", seed))
    return seed


def seed_report(nodeid: str, seeds: list[tuple[str, int]]) -> str:
    """The "seeds" section of a failure report: each seed with its key, and the rerun command."""
    lines = [f"seed={seed} (key {key!r})" for key, seed in seeds]
    base = env_seed()
    env = "" if base is None else f"{SEED_ENV}={base} "
    lines.append(f"rerun: {env}pytest {shlex.quote(nodeid)}")
    if base is None:
        lines.append(f"(seeds are fixed per key; {SEED_ENV}=<integer> draws other streams)")
    return "\n".join(lines) + "\n"


def pytest_configure(config: pytest.Config) -> None:
    env_seed()  # a non-integer SPARSA_SEED is a usage error before anything runs


def pytest_report_header(config: pytest.Config) -> str:
    base = env_seed()
    if base is None:
        return f"seeds: fixed per test ({SEED_ENV} unset)"
    return f"seeds: {SEED_ENV}={base} combined with each test's key"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    seeds = [s for node in item.listchain() for s in node.stash.get(_SEEDS, [])]
    if report.failed and seeds:
        report.sections.append(("seeds", seed_report(item.nodeid, seeds)))
    return report


@pytest.fixture
def seed_for(request):
    """``seed_for(key) -> int``: the seed of stream ``key`` for this test (see
    ``seed_for_key``), recorded for its failure report."""
    return functools.partial(record_seed, request.node)


@pytest.fixture
def node_seed(request) -> int:
    """One seed for this test: its node id (parameters included) is the key."""
    return record_seed(request.node, request.node.nodeid)


@pytest.fixture(scope="session")
def seed_for_node():
    """``seed_for_node(request.node, key) -> int`` for fixtures of module or class scope: the
    seed is recorded on that node, so every test under it reports it when it fails."""
    return record_seed


@pytest.fixture(params=range(N_SEEDS), ids=lambda i: f"seed{i}")
def seed(request) -> int:
    """Several seeds per test: one stream per parametrized test (its node id is the key)."""
    return record_seed(request.node, request.node.nodeid)


@pytest.fixture
def rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)
