"""Design-space exploration: the SPEC at the edge, sweeps on a 2-process Dask LocalCluster, the
durable store and resume, exact Pareto fronts, the command line (also on a hand-started
``dask scheduler`` with two ``dask worker`` processes, one of them killed mid-sweep)."""

from __future__ import annotations

import json
import random
import re
import tomllib
from pathlib import Path

import pytest

from sparsa.cli import main
from sparsa.config import ArrayConfig
from sparsa.models.load import load_graph
from sparsa.sw.energy import load_table
from sparsa.sw.evaluate import evaluate, point_key
from sparsa.sw.explore import SpecError, parse_spec
from sparsa.sw.explore_outputs import analyse
from sparsa.sw.pareto import pareto_indices
from sparsa.sw.report import build_report
from sparsa.sw.result_store import ResultStore
from sparsa.sw.search import make_search
from sparsa.sw.sweep import run_sweep

TOPOLOGY = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
            "Num Filter, Strides,\nConv1, 18, 18, 3, 3, 8, 16, 1,\nConv2, 8, 8, 3, 3, 16, 32, 2,\n"
            "FC, 1, 1, 1, 1, 288, 10, 1,\n")


# A lambda is pickled by value, so the workers need not import this test module.
AREA = lambda cfg: cfg.rows * cfg.cols * (0.5 * cfg.n + 0.25 * cfg.index_width)  # noqa: E731


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def topology(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny.csv"
    path.write_text(TOPOLOGY)
    return path


def spec_of(topology: Path, **extra) -> dict:
    spec = {
        "models": [{"name": str(topology)}, {"name": "digits_mlp"}],
        "space": {"rows": [2, 4], "cols": [2], "nm": ["1:1", "2:4", "1:4"],
                  "dram_bytes_per_cycle": [4, 16]},
        "objectives": ["latency", "energy", "area"],
    }
    spec.update(extra)
    return spec


def graphs_of(spec) -> dict:
    return {m.label: load_graph(m.name) for m in spec.models}


@pytest.fixture(scope="module")
def swept(client, topology, tmp_path_factory):
    """A grid sweep of 12 configurations x 2 models, stored."""
    spec = parse_spec(spec_of(topology))
    graphs = graphs_of(spec)
    store_path = tmp_path_factory.mktemp("store") / "results.sqlite"
    with ResultStore(store_path) as store:
        result = run_sweep(spec, graphs, store, client, table=load_table(), area=AREA,
                           area_name="fake")
        stored = store.get(store.keys())
    return spec, graphs, result, stored


def test_every_result_equals_build_report(swept):
    _, graphs, result, stored = swept
    assert len(result.evaluations) == 12 * 2 == result.computed
    assert {e.key for e in result.evaluations} == set(stored)
    table = load_table()
    for e in result.evaluations:
        assert stored[e.key] == e
        report = build_report(graphs[e.model], e.config, table=table)
        assert e.cycles == report.total.cycles.total
        assert e.dense_cycles == report.dense_total.cycles.total
        assert e.energy_uj == pytest.approx(report.energy.total / 1e6, rel=1e-12)
        assert e.dram_bytes == report.total.actions.dram_bytes
        assert e.speedup == report.speedup
        assert e.latency_s == pytest.approx(e.cycles / (e.config.clock_mhz * 1e6), rel=1e-12)
        assert e.area_kge == AREA(e.config)
        assert e.key == point_key(e.config, e.model, table.name, "fake")
        assert e == evaluate(e.config, graphs[e.model], AREA(e.config), point=e.key,
                             model=e.model, table=table)


def brute_front(vectors: list[tuple[float, ...]]) -> set[int]:
    """Written independently of sparsa.sw.pareto: i is out if some j is <= everywhere, < once."""
    out = set()
    for i, a in enumerate(vectors):
        beaten = False
        for j, b in enumerate(vectors):
            if j == i:
                continue
            le = [y <= x for x, y in zip(a, b, strict=True)]
            lt = [y < x for x, y in zip(a, b, strict=True)]
            if all(le) and any(lt):
                beaten = True
                break
        if not beaten:
            out.add(i)
    return out


def test_pareto_set_equals_brute_force(swept):
    spec, _, result, _ = swept
    fronts = analyse(spec, result.evaluations)
    assert [f.model for f in fronts] == [m.label for m in spec.models] + ["all models"]
    for f in fronts[:-1]:
        points = [e for e in result.evaluations if e.model == f.model]
        vectors = [(e.latency_s, e.energy_uj, e.area_kge) for e in points]
        expected = {points[i].key for i in brute_front(vectors)}
        assert {e.key for e in f.front} == expected
        assert f.best["latency"].latency_s == min(v[0] for v in vectors)
        assert f.best["area"].area_kge == min(v[2] for v in vectors)
    # all models together: each configuration's latency and energy summed over the models
    configs = sorted({e.config for e in result.evaluations}, key=lambda c: c.to_json())
    totals = []
    for cfg in configs:
        mine = [e for e in result.evaluations if e.config == cfg]
        assert len(mine) == 2
        totals.append((sum(e.latency_s for e in mine), sum(e.energy_uj for e in mine),
                       mine[0].area_kge))
    combined = fronts[-1]
    assert len(combined.points) == len(configs)
    expected = {configs[i] for i in brute_front(totals)}
    assert {e.config for e in combined.front} == expected
    for e in combined.front:
        i = configs.index(e.config)
        assert (e.latency_s, e.energy_uj) == pytest.approx(totals[i][:2], rel=1e-12)


def test_pareto_filter_on_random_points(node_seed):
    rng = random.Random(node_seed)
    for _ in range(50):
        dims = rng.randint(1, 4)
        # small integer coordinates: many ties and duplicates
        vectors = [tuple(rng.randint(0, 4) for _ in range(dims))
                   for _ in range(rng.randint(1, 30))]
        assert set(pareto_indices(vectors)) == brute_front(vectors)


def test_maximized_objective_and_result_constraint(swept):
    spec, _, result, _ = swept
    raw = spec_of(Path(spec.models[0].name), objectives=["latency", "throughput_per_area"],
                  constraints=["area_kge <= 4"])
    spec2 = parse_spec(raw)
    for f in analyse(spec2, result.evaluations):
        assert all(e.area_kge <= 4 for e in f.feasible)
        assert len(f.feasible) < len(f.points)
        vectors = [(e.latency_s, -e.metrics["throughput_per_kge"]) for e in f.feasible]
        assert {e.key for e in f.front} == {f.feasible[i].key for i in brute_front(vectors)}


# Stand-in FPGA resources (a lambda: pickled by value for the workers).
FPGA = lambda cfg: {"luts": 40 * cfg.rows * cfg.cols * cfg.m, "ffs": 100 * cfg.rows * cfg.cols,  # noqa: E731
                    "dsps": cfg.multipliers, "carry": 0}


def test_fpga_resources_objectives_and_constraints(client, topology, tmp_path):
    raw = spec_of(topology, fpga="ecp5", area=False, constraints=["dsps <= 8"],
                  objectives=["latency", "luts", "throughput_per_dsp"])
    spec = parse_spec(raw)
    with ResultStore(tmp_path / "f.sqlite") as store:
        with pytest.raises(ValueError, match="no fpga function was given"):
            run_sweep(spec, graphs_of(spec), store, client, table=load_table())
        result = run_sweep(spec, graphs_of(spec), store, client, table=load_table(), fpga=FPGA)
    assert len(result.evaluations) == 24
    for e in result.evaluations:
        assert (e.luts, e.ffs, e.dsps) == (FPGA(e.config)["luts"], FPGA(e.config)["ffs"],
                                           e.config.multipliers)
        assert e.area_kge is None
        assert e.metrics["throughput_per_dsp"] == pytest.approx(1 / e.latency_s / e.dsps)
    for f in analyse(spec, result.evaluations):
        assert {e.key for e in f.feasible} == {e.key for e in f.points if e.dsps <= 8}
        vectors = [(e.latency_s, e.luts, -e.metrics["throughput_per_dsp"]) for e in f.feasible]
        assert {e.key for e in f.front} == {f.feasible[i].key for i in brute_front(vectors)}


# The FPGA figures with block RAMs and a post-route Fmax, as sparsa.hw.fpga_area.fpga_resources
# gives them with fmax=True (made up here: the sweep only carries them).
FPGA_PNR = lambda cfg: {"luts": 40 * cfg.rows * cfg.cols, "ffs": 100, "dsps": cfg.multipliers,  # noqa: E731
                        "carry": 0, "brams": 4 * cfg.cols + cfg.rows,
                        "fmax_mhz": 120.0 - 5 * cfg.rows - 2 * cfg.m}


def test_fpga_brams_and_fmax_objectives_and_constraints(client, topology, tmp_path):
    raw = spec_of(topology, fpga="ecp5", fpga_fmax=True, area=False,
                  constraints=["brams <= 12", "fmax_mhz >= 100"],
                  objectives=["latency", "brams", "fmax"])
    spec = parse_spec(raw)
    with ResultStore(tmp_path / "p.sqlite") as store:
        result = run_sweep(spec, graphs_of(spec), store, client, table=load_table(),
                           fpga=FPGA_PNR)
    estimated = parse_spec(spec_of(topology, fpga="ecp5", fpga_fmax="estimate",
                                   objectives=["latency", "fmax"]))
    assert estimated.fpga_fmax == "estimate"
    for e in result.evaluations:
        assert (e.brams, e.fmax_mhz) == (FPGA_PNR(e.config)["brams"],
                                         FPGA_PNR(e.config)["fmax_mhz"])
    for f in analyse(spec, result.evaluations):
        assert {e.key for e in f.feasible} == {
            e.key for e in f.points if e.brams <= 12 and e.fmax_mhz >= 100}
        vectors = [(e.latency_s, e.brams, -e.fmax_mhz) for e in f.feasible]
        assert {e.key for e in f.front} == {f.feasible[i].key for i in brute_front(vectors)}


def test_area_parts_add_up_and_reach_the_outputs(tmp_path, topology):
    """evaluate() takes the area by part (array, logic, SRAM) as sparsa.hw.area.area_kge gives
    it; the total is the objective, the parts are columns of results.csv."""
    from sparsa.sw.explore_outputs import write_outputs

    spec = parse_spec(spec_of(topology, models=[{"name": str(topology)}]))
    graph, label = load_graph(str(topology)), spec.models[0].label
    cfg = ArrayConfig(rows=2, cols=2)
    parts = {"area_kge": 6.0, "array_kge": 1.0, "logic_kge": 2.0, "sram_kge": 3.0}
    e = evaluate(cfg, graph, parts, point="k", model=label)
    assert (e.area_kge, e.array_kge, e.logic_kge, e.sram_kge) == (6.0, 1.0, 2.0, 3.0)
    assert e.metrics["throughput_per_kge"] == pytest.approx(1 / e.latency_s / 6.0)
    plain = evaluate(cfg, graph, 6.0, point="k", model=label)
    assert (plain.area_kge, plain.sram_kge) == (6.0, None)
    write_outputs(spec, [e], tmp_path / "out")
    text = (tmp_path / "out" / "results.csv").read_text().splitlines()
    row = dict(zip(text[0].split(","), text[1].split(","), strict=True))
    assert [float(row[k]) for k in ("area_kge", "array_kge", "logic_kge", "sram_kge")] == [
        6.0, 1.0, 2.0, 3.0]
    assert "| 6.0 | 1.0 / 2.0 / 3.0 |" in (tmp_path / "out" / "summary.md").read_text()


def test_cell_area_with_a_liberty_library(client, topology, tmp_path):
    lib = tmp_path / "cells.lib"
    lib.write_text("library(x) { cell(NAND2) { area: 1.0; } }\n")   # only its path is checked
    spec = parse_spec(spec_of(topology, liberty=str(lib), area=False,
                              objectives=["latency", "cell_area"],
                              constraints=["area_um2 <= 20"]))
    um2 = lambda cfg: 3.5 * cfg.rows * cfg.cols * (cfg.n + cfg.index_width)  # noqa: E731
    with ResultStore(tmp_path / "l.sqlite") as store:
        with pytest.raises(ValueError, match="no liberty function was given"):
            run_sweep(spec, graphs_of(spec), store, client, table=load_table())
        result = run_sweep(spec, graphs_of(spec), store, client, table=load_table(),
                           liberty=um2)
    assert all(e.area_um2 == um2(e.config) for e in result.evaluations)
    for f in analyse(spec, result.evaluations):
        assert {e.key for e in f.feasible} == {e.key for e in f.points if e.area_um2 <= 20}
        vectors = [(e.latency_s, e.area_um2) for e in f.feasible]
        assert {e.key for e in f.front} == {f.feasible[i].key for i in brute_front(vectors)}


def test_a_failing_point_is_named(client, topology, tmp_path):
    def broken(cfg):
        if cfg.rows == 4:
            raise ValueError("no area for 4 rows")
        return 1.0

    spec = parse_spec(spec_of(topology))
    with ResultStore(tmp_path / "e.sqlite") as store, \
            pytest.raises(RuntimeError, match=r"on 4x2 \d:\d \(.*\) failed: no area for 4 rows"):
        run_sweep(spec, graphs_of(spec), store, client, table=load_table(), area=broken)


def test_configurations_of_the_same_hardware_share_one_area_task(client, topology, tmp_path):
    """An area callable's ``same_hardware`` maps each configuration to the one whose area task
    stands for it (the real one: configurations that differ only in fields the RTL ignores):
    here the memory port, so both ports get the area computed for the 16-byte one."""
    area = lambda cfg: float(cfg.dram_bytes_per_cycle)  # noqa: E731
    area.same_hardware = lambda cfg: cfg.replace(dram_bytes_per_cycle=16)
    spec = parse_spec(spec_of(topology, models=[{"name": str(topology)}],
                              space={"rows": [2], "cols": [2], "nm": ["2:4"],
                                     "dram_bytes_per_cycle": [4, 16]}))
    with ResultStore(tmp_path / "e.sqlite") as store:
        result = run_sweep(spec, graphs_of(spec), store, client, table=load_table(), area=area)
    assert sorted(e.config.dram_bytes_per_cycle for e in result.evaluations) == [4, 16]
    assert [e.area_kge for e in result.evaluations] == [16.0, 16.0]


class StopSweepError(Exception):
    pass


def test_resume_after_interrupted_sweep(client, topology, tmp_path):
    spec = parse_spec(spec_of(topology))
    graphs = graphs_of(spec)
    total = 24

    def stop_after(k):
        def progress(done, _total):
            if done >= k:
                raise StopSweepError
        return progress

    with ResultStore(tmp_path / "r.sqlite") as store:
        with pytest.raises(StopSweepError):
            run_sweep(spec, graphs, store, client, table=load_table(), area=AREA,
                      progress=stop_after(5))
        first = len(store)
        assert 5 <= first < total
    with ResultStore(tmp_path / "r.sqlite") as store:   # a new process would reopen it like this
        again = run_sweep(spec, graphs, store, client, table=load_table(), area=AREA)
        assert again.reused == first
        assert again.computed == total - first
        keys = store.keys()
        assert len(keys) == len(set(keys)) == total
        assert {e.key for e in again.evaluations} == set(keys)
        third = run_sweep(spec, graphs, store, client, table=load_table(), area=AREA)
        assert (third.computed, third.reused, len(store)) == (0, total, total)


def test_random_search_is_seeded_and_nsga2_stays_in_budget(client, topology, tmp_path):
    spec = parse_spec(spec_of(topology, search={"method": "random", "budget": 5, "seed": 3}))
    first = make_search(spec).ask()
    assert first == make_search(spec).ask()
    assert len(set(first)) == 5
    assert make_search(spec).ask() != make_search(parse_spec(spec_of(
        topology, search={"method": "random", "budget": 5, "seed": 4}))).ask()

    spec = parse_spec(spec_of(topology, constraints=["multipliers <= 8"],
                              search={"method": "nsga2", "budget": 6, "seed": 1,
                                      "population": 4}))
    feasible = set(spec.configs())
    with ResultStore(tmp_path / "n.sqlite") as store:
        result = run_sweep(spec, graphs_of(spec), store, client, table=load_table(), area=AREA)
    configs = {e.config for e in result.evaluations}
    assert len(configs) == 6
    assert configs <= feasible
    assert len(result.evaluations) == 12


BAD_SPECS = [
    ({"space": {"rows": [2]}}, r"models = None: expected a non-empty array"),
    ({"models": [{"name": "digits_mlp"}]}, r"space = None: expected a table"),
    ({"models": ["digits_mlp"], "space": {"rows": []}},
     r"space\.rows = \[\]: expected at least one value \(the space is empty\)"),
    ({"models": ["digits_mlp"], "space": {"rowz": [2]}}, r"space\.rowz: unknown field"),
    ({"models": ["digits_mlp"], "space": {"rows": [2, 0]}},
     r"space\.rows value 0: rows must be a positive integer"),
    ({"models": ["digits_mlp"], "space": {"nm": ["2:4", "5:4"]}}, r"space\.nm value '5:4'"),
    ({"models": ["digits_mlp"], "space": {"rows": {"min": 8, "max": 2}}},
     r"space\.rows = .*min <= max \(the range is empty\)"),
    ({"models": ["digits_mlp"], "space": {"rows": [2, 4]},
      "constraints": ["multipliers == 256"]},
     r"constraint 'multipliers == 256' holds for no configuration of the space "
     r"\(multipliers spans 32\.\.64\)"),
    ({"models": ["digits_mlp"], "space": {"rows": [2, 4]},
      "constraints": ["rows >= 4", "rows <= 2"]}, r"together hold for no configuration"),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "constraints": ["speed > 1"]},
     r"unknown quantity 'speed'"),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "constraints": ["rows ~ 1"]},
     r"constraints\[\] = 'rows ~ 1': expected 'quantity op number'"),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "objectives": ["speed"]},
     r"objectives\[\] = 'speed': expected one of latency"),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "area": False, "objectives": ["area"]},
     r"objective 'area' needs the area, but area = false"),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "search": {"method": "random"}},
     r"search\.method = 'random' needs a budget"),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "search": {"method": "anneal"}},
     r"search\.method = 'anneal': expected one of grid, random, nsga2"),
    ({"models": ["digits_mlp"], "space": {"rows": [2]},
      "search": {"method": "nsga2", "budget": 0}}, r"search\.budget = 0: expected an integer"),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "colour": "red"},
     r"unknown key\(s\) 'colour'"),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "constraints": ["dsps <= 156"]},
     r"constraint 'dsps <= 156' needs an FPGA synthesis: set fpga = \"ecp5\""),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "objectives": ["throughput_per_dsp"]},
     r"objective 'throughput_per_dsp' needs an FPGA synthesis"),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "fpga": "stratix"},
     r"fpga = 'stratix': expected one of ecp5, ice40, xilinx"),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "fpga_device": "85k"},
     r"fpga_device = '85k': expected a device name, with fpga set"),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "fpga": "ice40", "fpga_fmax": True},
     r"fpga_fmax = True: expected true, false or \"estimate\"; not false only with fpga = "
     r"\"ecp5\""),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "fpga": "ecp5", "fpga_fmax": 1},
     r"fpga_fmax = 1: expected true, false or \"estimate\""),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "fpga": "ecp5", "fpga_fmax": "fit"},
     r"fpga_fmax = 'fit': expected true, false or \"estimate\""),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "fpga": "ecp5",
      "objectives": ["latency", "fmax"]},
     r"objective 'fmax' needs place and route: set fpga = \"ecp5\" and fpga_fmax = true"),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "constraints": ["brams <= 100"]},
     r"constraint 'brams <= 100' needs an FPGA synthesis"),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "liberty": "no/such.lib"},
     r"liberty = 'no/such.lib': expected the path of a Liberty \(\.lib\) file"),
    ({"models": ["digits_mlp"], "space": {"rows": [2]}, "objectives": ["cell_area"]},
     r"objective 'cell_area' needs a cell library: set liberty = \"cells.lib\""),
    ({"models": ["digits_mlp"], "base": "huge", "space": {"rows": [2]}},
     r"base: unknown preset 'huge'"),
    ({"models": ["digits_mlp"], "space": {"rows": {"min": 1, "max": 4096},
                                          "cols": {"min": 1, "max": 4096}}},
     r"the space has 16,777,216 configurations; at most 200,000"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_SPECS)
def test_bad_spec_is_one_clear_error(raw, message):
    with pytest.raises(SpecError, match=message) as info:
        parse_spec(raw, source="s.toml")
    assert str(info.value).startswith("s.toml: ")
    assert "\n" not in str(info.value)


def test_ranges():
    spec = parse_spec({"models": ["digits_mlp"],
                       "space": {"rows": {"min": 2, "max": 16, "factor": 2},
                                 "cols": {"min": 2, "max": 6, "step": 2}}})
    assert dict(spec.space) == {"rows": (2, 4, 8, 16), "cols": (2, 4, 6)}
    assert spec.size == 12 == len(spec.configs())


SMALL_SPEC = """\
area = false
objectives = ["latency", "energy"]
constraints = ["multipliers <= 16"]

[[models]]
name = "{topology}"

[space]
rows = [2, 4]
cols = [2]
nm = ["1:1", "2:4", "1:4"]
"""


def run_cli(*args: str) -> int:
    return main(["explore", *args])


def test_cli_writes_fronts_and_configs_then_reuses_and_resumes(topology, tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SMALL_SPEC.format(topology=topology))
    out = tmp_path / "sweep"
    assert run_cli(str(spec), "-o", str(out), "--workers", "2", "--dashboard-address", ":0") == 0
    text = capsys.readouterr().out
    assert "dashboard http://" in text
    assert re.search(r"6 points \(6 evaluated, 0 from the store\)", text)
    report = out / "report"
    data = json.loads((report / "results.json").read_text())
    assert len(data["results"]) == 6
    front = data["fronts"][str(topology)]
    configs = sorted((report / "pareto" / "tiny").glob("*.toml"))
    assert len(configs) == len(front) >= 1
    by_key = {r["key"]: r for r in data["results"]}
    for path in configs:
        cfg = ArrayConfig.from_file(path)
        assert any(by_key[k]["rows"] == cfg.rows and by_key[k]["nm"] == cfg.nm for k in front)
    for name in ("results.csv", "pareto.csv", "summary.md", "tiny_latency_energy.png"):
        assert (report / name).is_file()
    assert not (report / "tiny_latency_area.png").exists()   # area = false

    assert run_cli(str(spec), "-o", str(out), "--workers", "1", "--dashboard-address", ":0") == 0
    assert "6 points (0 evaluated, 6 from the store)" in capsys.readouterr().out
    assert run_cli("--resume", "-o", str(out), "--workers", "1",
                   "--dashboard-address", ":0") == 0
    assert "6 points (0 evaluated, 6 from the store)" in capsys.readouterr().out


def test_cli_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli("--resume", "-o", str(tmp_path / "none"))
    assert info.value.code == 2
    assert "holds no sweep to resume" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[space]\nrows = [2]\n")
    with pytest.raises(SystemExit) as info:
        run_cli(str(bad), "-o", str(tmp_path / "o"))
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.count("\n") == 1
    assert "models = None" in err
    assert not (tmp_path / "o").exists()


def test_example_spec_is_valid():
    root = Path(__file__).resolve().parents[2]
    spec = parse_spec(tomllib.loads((root / "examples" / "explore_small.toml").read_text()),
                      source="examples/explore_small.toml")
    assert 10 <= len(spec.configs()) * len(spec.models) <= 60


def test_models_take_batch_and_seq_and_configs_are_hashed(tmp_path, monkeypatch):
    """A SPEC's model may set batch and seq (a Hugging Face config here, traced at that shape),
    and the point's identity carries the config file's content, so editing it re-evaluates."""
    from sparsa.sw.sweep import load_models, model_identity

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = tmp_path / "tiny" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"model_type": "mistral", "hidden_size": 64,
                                  "intermediate_size": 128, "num_hidden_layers": 1,
                                  "num_attention_heads": 8, "num_key_value_heads": 2,
                                  "vocab_size": 100, "max_position_embeddings": 256}))
    spec = parse_spec({"models": [{"name": str(config), "batch": 2, "seq": 16}],
                       "space": {"rows": [2]}, "area": False})
    (model,) = spec.models
    assert model.label == f"{config}@b2@s16"
    graph = load_models(spec)[model.label]
    assert graph.input_shape == (2, 16)
    before = model_identity(model)
    config.write_text(config.read_text().replace('"vocab_size": 100', '"vocab_size": 120'))
    assert model_identity(model) != before
    with pytest.raises(SpecError, match=r"models\[0\]\.seq"):
        parse_spec({"models": [{"name": "gpt2", "seq": 0}], "space": {"rows": [2]}})
    bad = parse_spec({"models": [{"name": "resnet50", "seq": 16}], "space": {"rows": [2]},
                      "area": False})
    with pytest.raises(ValueError, match=r"model 'resnet50': .*seq"):
        load_models(bad)
