"""Testbench (cocotb) of :class:`~sparsa.hw.SparsePE` (top ``sparsa_pe``).

Every cycle the driver applies random inputs (datapath enable, weight writes into a random bank,
activations tagged with a random bank, partial sums across the whole int32 range). A reference
model keeps both weight banks and the PE's internal pipeline (``pipeline_depth`` stages) and
computes, with :func:`sparsa.nm.gemm_nm`, what the PE must register; the monitor compares
``psum_out`` and ``act_out`` every cycle.
"""

from __future__ import annotations

from collections import deque

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from sparsa import nm
from sparsa.hw import layouts

from .cocotb_util import load_config, log, seed_for, start_clock_and_reset


def _bits(layout, value) -> int:
    return layout.const(value).as_value().value


@cocotb.test(timeout_time=1000, timeout_unit="us")
@cocotb.parametrize(enable_prob=[1.0, 0.7])
async def random_cycles(dut, enable_prob: float) -> None:
    cfg = load_config()
    seed = seed_for(f"pe-random-{enable_prob}")
    rng = seed.rng()
    acc_lo, acc_hi = -(1 << (cfg.acc_width - 1)), (1 << (cfg.acc_width - 1)) - 1
    a_lo, a_hi = -(1 << (cfg.act_width - 1)), (1 << (cfg.act_width - 1)) - 1
    w_lo, w_hi = -(1 << (cfg.weight_width - 1)), (1 << (cfg.weight_width - 1)) - 1
    inputs = [dut.en, dut.act_in, dut.psum_in, dut.w_en, dut.w_bank, dut.w_data]
    await start_clock_and_reset(dut, inputs)

    # Reference state: both banks hold zero values after reset (their indices are zero too, which
    # the compressed format rejects as duplicates; with zero values any ascending indices
    # compute the same), and so do the pipeline registers between the multipliers and the adder
    # (pipeline_depth of them, holding dot products).
    banks = [(np.zeros(cfg.n, np.int64), np.arange(cfg.n, dtype=np.int64)) for _ in range(2)]
    psum_reg, act_reg = 0, (np.zeros(cfg.m, np.int64), 0)
    pipe = deque([0] * cfg.pipeline_depth)
    checked = 0
    for cycle in range(400):
        await RisingEdge(dut.clk)
        en = rng.random() < enable_prob
        acts = [rng.choice([a_lo, rng.randint(a_lo, a_hi)]) for _ in range(cfg.m)]
        bank = rng.randint(0, 1)
        psum = rng.choice([acc_lo, acc_hi, rng.randint(acc_lo, acc_hi)])
        w_en = rng.random() < 0.3
        w_bank = rng.randint(0, 1)
        values = [rng.choice([w_lo, 0, rng.randint(w_lo, w_hi)]) for _ in range(cfg.n)]
        indices = sorted(rng.sample(range(cfg.m), cfg.n)) if not cfg.is_dense else list(
            range(cfg.n))
        dut.en.value = int(en)
        dut.act_in.value = _bits(layouts.pe_act(cfg), {"data": acts, "bank": bank})
        dut.psum_in.value = psum & ((1 << cfg.acc_width) - 1)
        dut.w_en.value = int(w_en)
        dut.w_bank.value = w_bank
        w_value = {"values": values}
        if cfg.index_width:
            w_value["indices"] = indices
        dut.w_data.value = _bits(layouts.pe_weights(cfg), w_value)

        await ReadOnly()
        # Outputs now show what the edge that started this cycle registered.
        got_psum = dut.psum_out.value.to_signed()
        got_act = layouts.pe_act(cfg).from_bits(dut.act_out.value.to_unsigned())
        got_acts = [int(got_act.data[i]) for i in range(cfg.m)]
        at = f"cycle {cycle} ({seed})"
        assert got_psum == psum_reg, f"{at}: psum_out {got_psum}, model {psum_reg}"
        assert got_acts == list(act_reg[0]), f"{at}: act_out {got_acts}, model {act_reg}"
        assert int(got_act.bank) == act_reg[1], f"{at}: act_out bank, model {act_reg}"
        checked += 1

        # What the next edge registers: uses the banks as they are during this cycle.
        if en:
            vals, idx = banks[bank]
            packed = nm.CompressedNM(values=vals.reshape(1, cfg.n, 1),
                                         indices=idx.reshape(1, cfg.n, 1), n=cfg.n, m=cfg.m,
                                         k=cfg.m)
            dot = int(nm.gemm_nm(np.array([acts]), packed, act_width=cfg.act_width,
                                     weight_width=cfg.weight_width,
                                     acc_width=cfg.acc_width)[0, 0])
            pipe.append(dot)
            psum_reg = int(nm.wrap(psum + pipe.popleft(), cfg.acc_width))
            act_reg = (np.array(acts, np.int64), bank)
        if w_en:
            banks[w_bank] = (np.array(values, np.int64), np.array(indices, np.int64))
    log.info("PE %s: %d cycles checked against the golden model", cfg.nm, checked)
