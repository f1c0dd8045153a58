"""The seeding rule of ``tests/conftest.py``: one stream per key, reproducible without
``SPARSA_SEED``, other streams with it, any integer accepted, and the seed named in the report of
a failing test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SEED_ENV, env_seed, seed_for_key

KEYS = ["tests/a.py::test_x", "tests/a.py::test_x[seed0]", "tests/a.py::test_x[seed1]",
        "tests/b.py::test_x", "hls4ml-requant-probe", ""]


def seeds(keys=KEYS) -> list[int]:
    return [seed_for_key(key) for key in keys]


def test_without_env_each_key_has_its_own_fixed_seed(monkeypatch):
    monkeypatch.delenv(SEED_ENV, raising=False)
    got = seeds()
    assert len(set(got)) == len(KEYS)
    assert got == seeds()
    assert got[0] == zlib.crc32(KEYS[0].encode())  # unchanged since seeds were first fixed
    monkeypatch.setenv(SEED_ENV, "")  # empty counts as unset
    assert seeds() == got


@pytest.mark.parametrize("value", ["0", "1", "-1", "12345678901234567890", "-99999999999", " 7 "])
def test_env_gives_other_distinct_streams(monkeypatch, value):
    monkeypatch.delenv(SEED_ENV, raising=False)
    fixed = seeds()
    monkeypatch.setenv(SEED_ENV, value)
    got = seeds()
    assert len(set(got)) == len(KEYS), "two keys share a stream"
    assert got == seeds(), "same key and SPARSA_SEED, another seed"
    assert not set(got) & set(fixed)
    for seed in got:
        assert 0 <= seed < 2**32
        np.random.default_rng(seed)  # NumPy takes it (a negative seed would raise)


def test_env_values_differ_and_are_read_as_integers(monkeypatch):
    by_value = {}
    for value in ["0", "1", "2", "-1", "-2", "4294967296"]:
        monkeypatch.setenv(SEED_ENV, value)
        by_value[value] = seeds()
    assert len({tuple(s) for s in by_value.values()}) == len(by_value)
    monkeypatch.setenv(SEED_ENV, "+01")  # the integer, not the spelling, names the stream
    assert seeds() == by_value["1"]


@pytest.mark.parametrize("value", ["abc", "1.5", "0x10", "1e3", "--1"])
def test_non_integer_env_is_a_usage_error(monkeypatch, value):
    monkeypatch.setenv(SEED_ENV, value)
    with pytest.raises(pytest.UsageError, match=rf"SPARSA_SEED must be an integer, not '{value}'"):
        env_seed()
    with pytest.raises(pytest.UsageError, match="SPARSA_SEED"):
        seed_for_key("k")


FAILING = '''
import numpy as np

def test_fails(rng):
    assert rng.integers(10) < 0

def test_passes(node_seed):
    assert node_seed >= 0
'''


def run_pytest(tmp_path: Path, env_value: str | None) -> subprocess.CompletedProcess:
    """pytest on a failing test with a copy of this conftest, in a bare directory."""
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_demo.py").write_text(FAILING)
    env = {k: v for k, v in os.environ.items() if k != SEED_ENV}
    if env_value is not None:
        env[SEED_ENV] = env_value
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-p", "no:randomly", "test_demo.py::test_fails[seed1]", "test_demo.py::test_passes"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("env_value", [None, "-1"])
def test_failure_report_names_seed_and_rerun(tmp_path, monkeypatch, env_value):
    run = run_pytest(tmp_path, env_value)
    assert run.returncode == 1, run.stdout + run.stderr
    if env_value is None:
        monkeypatch.delenv(SEED_ENV, raising=False)
    else:
        monkeypatch.setenv(SEED_ENV, env_value)
    seed = seed_for_key("test_demo.py::test_fails[seed1]")
    prefix = "" if env_value is None else f"{SEED_ENV}={env_value} "
    assert f"seed={seed} (key 'test_demo.py::test_fails[seed1]')" in run.stdout
    assert f"rerun: {prefix}pytest 'test_demo.py::test_fails[seed1]'" in run.stdout
    assert run.stdout.count("seed=") == 1  # the passing test reports nothing


def test_non_integer_env_stops_the_session(tmp_path):
    run = run_pytest(tmp_path, "twelve")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR
    assert "SPARSA_SEED must be an integer, not 'twelve'" in run.stderr
