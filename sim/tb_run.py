"""Testbench (cocotb) that runs a whole network on the accelerator RTL (``sparsa run --sim
verilator|icarus``): the model runner of :mod:`.infer` with a backend that drives the streams.

The job (model, number of images, result file) comes in ``SPARSA_RUN_JOB`` as JSON; the result
(:class:`~sparsa.sim.infer.ModelRun`) is written back as JSON for the command line to print.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb

from sparsa.isa import Opcode

from .cocotb_util import load_config, log
from .host import ProgramRun
from .infer import prepare_model, run_model
from .tb_accel import AccelTB


class CocotbBackend:
    """The host driver's cocotb backend: the accelerator driver with ideal streams into the
    simulated accelerator."""

    def __init__(self, tb: AccelTB, name: str):
        self.tb, self.name = tb, name

    async def run(self, program, data_in) -> ProgramRun:
        run = await self.tb.run(program, data_in)
        stores = sum(i.count for i in program if i.opcode == Opcode.STORE)
        assert len(run.outputs) == stores, f"{len(run.outputs)} output rows, {stores} stored"
        return ProgramRun.of(run)


@cocotb.test(timeout_time=None)
async def run_network(dut) -> None:
    job = json.loads(os.environ["SPARSA_RUN_JOB"])
    cfg = load_config()
    from sparsa.sw.prune import PrunePolicy

    policy = PrunePolicy.from_dict(job["policy"])
    name, qgraph, x, labels = prepare_model(job["model"], cfg, job["images"], policy)
    tb = AccelTB(dut, "run_network")
    await tb.start()

    def progress(record):
        log.info("%s %s %s: %d cycles measured, %d predicted", record.name, record.gemm,
                 record.pattern, record.measured, record.predicted)
        with open(job["progress"], "a") as f:
            f.write(json.dumps(record.name) + "\n")

    result = await run_model(CocotbBackend(tb, job["simulator"]), cfg, name, qgraph, x, labels,
                             progress=progress)
    Path(job["result"]).write_text(result.to_json())
