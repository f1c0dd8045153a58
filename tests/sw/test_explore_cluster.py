"""``sparsa explore`` on a hand-started cluster: a real ``dask scheduler`` and two ``dask worker``
processes on 127.0.0.1 over TCP, as the README shows; one worker is killed mid-sweep and every
point still arrives exactly once. All three processes are ended at the end, whatever happens."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from sparsa.cli import main
from sparsa.models.load import load_graph
from sparsa.sw.energy import load_table
from sparsa.sw.explore import parse_spec
from sparsa.sw.result_store import ResultStore
from sparsa.sw.sweep import run_sweep

DASK = str(Path(sys.executable).parent / "dask")
TOPOLOGY = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
            "Num Filter, Strides,\nConv1, 18, 18, 3, 3, 8, 16, 1,\nConv2, 8, 8, 3, 3, 16, 32, 2,\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """(scheduler address, {worker name: process}); everything is ended afterwards."""
    address = f"tcp://127.0.0.1:{free_port()}"
    procs: list[subprocess.Popen] = []
    workers = {}

    def start(args: list[str], log: str) -> subprocess.Popen:
        with open(tmp_path / log, "w") as f:
            p = subprocess.Popen([DASK, *args], stdout=f, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
        procs.append(p)
        return p

    try:
        start(["scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
               "--no-dashboard"], "scheduler.log")
        for name in ("w0", "w1"):
            workers[name] = start(["worker", address, "--name", name, "--nthreads", "1",
                                   "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                                   "--death-timeout", "60"], f"{name}.log")
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=90)
        yield address, workers
    finally:
        for p in reversed(procs):          # the workers, then the scheduler
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def spec_file(tmp_path: Path) -> Path:
    topology = tmp_path / "tiny.csv"
    topology.write_text(TOPOLOGY)
    spec = tmp_path / "spec.toml"
    spec.write_text(f'area = false\nobjectives = ["latency", "energy"]\n'
                    f'[[models]]\nname = "{topology}"\n[[models]]\nname = "digits_mlp"\n'
                    '[space]\nrows = [2, 4, 8]\ncols = [2, 4]\nnm = ["1:1", "2:4", "1:4"]\n'
                    'dram_bytes_per_cycle = [4, 16]\n')
    return spec


def test_cli_on_hand_started_scheduler_survives_a_killed_worker(cluster, tmp_path, capsys):
    address, workers = cluster
    spec_path = spec_file(tmp_path)
    total = 3 * 2 * 3 * 2 * 2

    # The command line on the scheduler address.
    out = tmp_path / "sweep"
    assert main(["explore", str(spec_path), "-o", str(out), "--scheduler", address]) == 0
    text = capsys.readouterr().out
    assert f"{total} points ({total} evaluated, 0 from the store)" in text
    rows = json.loads((out / "report" / "results.json").read_text())["results"]
    assert len([r for r in rows if r["model"] != "all models"]) == total
    assert len([r for r in rows if r["model"] == "all models"]) == total // 2

    # A fresh sweep; worker w1 is killed (SIGKILL) after a few results.
    from distributed import Client

    spec = parse_spec(tomllib.loads(spec_path.read_text()), source="spec")
    graphs = {m.label: load_graph(m.name) for m in spec.models}
    killed = []

    def progress(done: int, _total: int) -> None:
        if done >= 4 and not killed:
            workers["w1"].kill()
            killed.append(time.monotonic())

    with Client(address, timeout="30s") as client, \
            ResultStore(tmp_path / "after_kill.sqlite") as store:
        result = run_sweep(spec, graphs, store, client, table=load_table(), progress=progress)
        keys = store.keys()
    assert killed
    assert workers["w1"].wait(timeout=10) != 0
    assert result.computed == total
    assert len(keys) == len(set(keys)) == total
    assert {e.key for e in result.evaluations} == set(keys)


def test_ctrl_c_then_resume_stores_every_point_once(tmp_path):
    """``sparsa explore`` interrupted with SIGINT (status 130, the store kept), then
    ``--resume``: every point exactly once."""
    import signal
    import sqlite3

    spec = spec_file(tmp_path)
    text = spec.read_text().replace("rows = [2, 4, 8]", "rows = [2, 4, 8, 16]").replace(
        "dram_bytes_per_cycle = [4, 16]", "dram_bytes_per_cycle = [4, 8, 16, 32]")
    spec.write_text(text)
    total = 4 * 2 * 3 * 4 * 2
    out = tmp_path / "sweep"
    sparsa = str(Path(sys.executable).parent / "sparsa")

    def stored() -> int:
        try:
            with sqlite3.connect(f"file:{out / 'results.sqlite'}?mode=ro", uri=True) as db:
                return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        except sqlite3.Error:
            return 0

    proc = subprocess.Popen([sparsa, "explore", str(spec), "-o", str(out), "--workers", "2",
                             "--dashboard-address", ":0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while stored() < 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    first = stored()
    assert proc.returncode == 130, err
    assert "continue with 'sparsa explore --resume" in err
    assert 5 <= first < total
    assert main(["explore", "--resume", "-o", str(out), "--workers", "2",
                 "--dashboard-address", ":0"]) == 0
    with sqlite3.connect(out / "results.sqlite") as db:
        keys = [k for (k,) in db.execute("SELECT key FROM results")]
    assert len(keys) == len(set(keys)) == total
