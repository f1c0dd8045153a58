"""Testbench (cocotb) that runs a model's GEMM layers one program each on the accelerator RTL
(``sparsa run MODEL --sim verilator|icarus`` for models other than the digits demos): the layer
runner of :mod:`.model_run` with the cocotb backend of :mod:`.tb_run`.

The job (model, workload, prune policy, layer selection, seed) comes in ``SPARSA_RUN_JOB`` as
JSON; each layer's :class:`~sparsa.sim.model_run.LayerResult` is appended to the progress file
as one JSON line as soon as it is checked, which the command line follows and reads back.
"""

from __future__ import annotations

import dataclasses
import json
import os

import cocotb

from sparsa.models.load import load_graph
from sparsa.sw.prune import PrunePolicy

from .cocotb_util import load_config, log
from .model_run import plan_layers, run_layer
from .tb_accel import AccelTB
from .tb_run import CocotbBackend


@cocotb.test(timeout_time=None)
async def run_layers(dut) -> None:
    job = json.loads(os.environ["SPARSA_RUN_JOB"])
    cfg = load_config()
    graph = load_graph(job["model"], batch=job["batch"], seq=job["seq"])
    planned = plan_layers(graph, cfg, PrunePolicy.from_dict(job["policy"]), job["layers"])
    tb = AccelTB(dut, "run_layers")
    await tb.start()
    backend = CocotbBackend(tb, job["simulator"])
    for item in planned:
        result = await run_layer(backend, cfg, item, job["seed"], golden_macs=job["golden_macs"])
        log.info("layer %d %s: %d cycles measured, %d predicted", result.index, result.name,
                 result.measured, result.predicted)
        with open(job["progress"], "a") as f:
            f.write(json.dumps(dataclasses.asdict(result)) + "\n")
