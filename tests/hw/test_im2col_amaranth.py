# amaranth: UnusedElaboratable=no
# (test_bad_arguments builds feeders whose constructor fails on purpose: never elaborated.)
"""The on-chip im2col feeder in Amaranth's simulator: random convolutions (kernel, stride,
padding, channel blocks, P blocks starting mid-row and crossing images) on small arrays.

Three independent checks, none of which uses the unit's own walk: every beat equals the slice
of the NHWC input the test computes from the conv's indices; the beats times the weights
(reordered to the feeder's K order, N:M-compressed by the golden model) equal a direct int8
convolution with explicit loops; and without backpressure every beat appears in the cycle the
module docstring's contract gives, with a random ``gate``. The commands come from the
assembler's functions (:func:`sparsa.im2col.config_instruction`, :func:`compute_fields`); one
more test runs random, even inconsistent, CONFIG/COMPUTE fields and checks the unit against
the walk's executable definition (:func:`sparsa.im2col.walk`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator
from amaranth.utils import ceil_log2

from sparsa import isa, nm
from sparsa.config import ArrayConfig
from sparsa.hw.im2col import Im2colFeeder, command_layout, row_layout
from sparsa.im2col import ConvGeometry, compute_fields, config_instruction, walk
from sparsa.isa import Instruction, Opcode

CONFIGS = {
    "2x2-2of4": ArrayConfig(rows=2, cols=2, n=2, m=4, act_buffer_kib=4),
    "2x4-1of4": ArrayConfig(rows=2, cols=4, n=1, m=4, act_buffer_kib=4),
    "4x2-1of1": ArrayConfig(rows=4, cols=2, n=1, m=1, act_buffer_kib=2),
}
BATCH = 2
COUT = 3


@dataclass(frozen=True)
class Conv:
    h: int
    w: int
    c: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int

    @property
    def ho(self) -> int:
        return (self.h + 2 * self.ph - self.kh) // self.sh + 1

    @property
    def wo(self) -> int:
        return (self.w + 2 * self.pw - self.kw) // self.sw + 1


def random_conv(rng: np.random.Generator, k_pass: int, kernel: int | None = None) -> Conv:
    kh, kw = (kernel, kernel) if kernel else (int(v) for v in rng.integers(1, 4, size=2))
    sh, sw = (int(v) for v in rng.integers(1, 3, size=2))
    ph, pw = (int(v) for v in rng.integers(0, 3, size=2))
    h = int(rng.integers(max(1, kh - 2 * ph), 10))
    w = int(rng.integers(max(1, kw - 2 * pw), 10))
    c = int(rng.integers(1, 5 * k_pass // 2 + 1))
    return Conv(h, w, c, kh, kw, sh, sw, ph, pw)


def p_blocks(rng: np.random.Generator, total: int) -> list[tuple[int, int]]:
    """(first output pixel, count) covering 0..total-1 in random-size blocks."""
    blocks, p = [], 0
    while p < total:
        count = int(rng.integers(1, 12))
        blocks.append((p, min(count, total - p)))
        p += count
    return blocks


def fields(insn: Instruction) -> dict[str, int]:
    return {name: int(getattr(insn, name)) for name, _ in isa.FORMATS[insn.opcode]}


def commands(cfg: ArrayConfig, conv: Conv, base: int, blocks, swaps) -> list[dict]:
    """One command per (P block, K pass), passes in K order inside each block, with the fields
    the assembler gives a CONFIG and a COMPUTE."""
    geom = ConvGeometry(images=BATCH, in_size=(conv.h, conv.w), channels=conv.c,
                        kernel=(conv.kh, conv.kw), stride=(conv.sh, conv.sw),
                        padding=(conv.ph, conv.pw))
    config = fields(config_instruction(cfg, geom))
    out = []
    for p0, count in blocks:
        for i in range(conv.kh):
            for j in range(conv.kw):
                for b in range(geom.c_blocks(cfg)):
                    walk = compute_fields(cfg, geom, base=base, first=p0, offset=(i, j),
                                          block=b)
                    compute = fields(Instruction(Opcode.COMPUTE, count=count, **walk))
                    out.append({"config": config, "compute": compute,
                                "swap": int(swaps[len(out)])})
    return out


def expected_beats(cfg: ArrayConfig, conv: Conv, act: np.ndarray, blocks):
    """Every beat, from the conv's indices: (beats, K_pass) in command order, and whether
    its input pixel lies in the image."""
    kp = cfg.k_per_pass
    cb = -(-conv.c // kp)
    padded = np.zeros((*act.shape[:3], cb * kp), dtype=np.int64)
    padded[..., :conv.c] = act
    beats, inside = [], []
    for p0, count in blocks:
        for i in range(conv.kh):
            for j in range(conv.kw):
                for b in range(cb):
                    for p in range(p0, p0 + count):
                        n, rest = divmod(p, conv.ho * conv.wo)
                        oy, ox = divmod(rest, conv.wo)
                        y, x = oy * conv.sh - conv.ph + i, ox * conv.sw - conv.pw + j
                        inside.append(0 <= y < conv.h and 0 <= x < conv.w)
                        beats.append(padded[n, y, x, b * kp:(b + 1) * kp] if inside[-1]
                                     else np.zeros(kp, dtype=np.int64))
    return np.array(beats), np.array(inside)


def memory_image(cfg: ArrayConfig, conv: Conv, act: np.ndarray, base: int,
                 rng: np.random.Generator) -> np.ndarray:
    """The scratchpad: random rows everywhere (a wrong read cannot pass as padding), the input
    NHWC in blocks of K_pass channels from ``base``."""
    kp, depth = cfg.k_per_pass, cfg.scratchpad_rows["act"]
    cb = -(-conv.c // kp)
    image = rng.integers(-128, 128, size=(depth, kp))
    for n in range(BATCH):
        for y in range(conv.h):
            for x in range(conv.w):
                for b in range(cb):
                    row = np.zeros(kp, dtype=np.int64)
                    chans = act[n, y, x, b * kp:(b + 1) * kp]
                    row[:len(chans)] = chans
                    image[base + ((n * conv.h + y) * conv.w + x) * cb + b] = row
    return image


def direct_conv(conv: Conv, act: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """NHWC input, (Cout, C, kh, kw) weights -> (N, Ho, Wo, Cout), by explicit loops."""
    out = np.zeros((BATCH, conv.ho, conv.wo, weight.shape[0]), dtype=np.int64)
    for n in range(BATCH):
        for co in range(weight.shape[0]):
            for oy in range(conv.ho):
                for ox in range(conv.wo):
                    acc = 0
                    for ci in range(conv.c):
                        for i in range(conv.kh):
                            for j in range(conv.kw):
                                y, x = oy * conv.sh - conv.ph + i, ox * conv.sw - conv.pw + j
                                if 0 <= y < conv.h and 0 <= x < conv.w:
                                    acc += int(act[n, y, x, ci]) * int(weight[co, ci, i, j])
                    out[n, oy, ox, co] = acc
    return out


def nm_weights(cfg: ArrayConfig, conv: Conv, rng: np.random.Generator) -> np.ndarray:
    """Random int8 (Cout, C, kh, kw) weights, pruned N:M over groups of m consecutive channels
    of one kernel offset (the feeder's K order)."""
    cb = -(-conv.c // cfg.k_per_pass)
    w = rng.integers(-128, 128, size=(COUT, cb * cfg.k_per_pass, conv.kh, conv.kw))
    w[:, conv.c:] = 0
    groups = w.reshape(COUT, -1, cfg.m, conv.kh, conv.kw)
    order = np.argsort(np.abs(groups), axis=2, kind="stable")
    np.put_along_axis(groups, order[:, :, :cfg.m - cfg.n], 0, axis=2)
    return groups.reshape(w.shape)[:, :conv.c]


def k_order_matrix(cfg: ArrayConfig, conv: Conv, weight: np.ndarray) -> np.ndarray:
    """(K, Cout) with K = ((i*kw + j)*C_blocks + b)*K_pass + channel within the block."""
    cb = -(-conv.c // cfg.k_per_pass)
    mat = np.zeros((conv.kh, conv.kw, cb * cfg.k_per_pass, COUT), dtype=np.int64)
    mat[:, :, :conv.c] = weight.transpose(2, 3, 1, 0)
    return mat.reshape(-1, COUT)


def run_feeder(cfg: ArrayConfig, image: np.ndarray, cmds: list[dict], *, seed: int,
               backpressure: float, gaps: float, gate: float = 0.0):
    """Stream ``cmds`` (each offered after a random idle gap) with random output backpressure
    and ``gate`` low in a random fraction ``gate`` of the cycles. Returns a dict of lists: beat
    ``data``, ``swap`` flags and ``cycle``s, ``offer`` and ``accept`` cycles, the ``gate``
    value and ``issue`` output of every cycle, the scratchpad ``reads`` (addresses)."""
    dut = Im2colFeeder(cfg=cfg)
    mem = Memory(shape=row_layout(cfg), depth=cfg.scratchpad_rows["act"],
                 init=[list(row) for row in image])
    top = Module()
    top.submodules.dut, top.submodules.mem = dut, mem
    wiring.connect(top, dut.rd, mem.read_port())
    total = sum(c["compute"]["count"] for c in cmds)
    layout, rows = command_layout(), row_layout(cfg)
    out = {k: [] for k in ("data", "swap", "cycle", "offer", "accept", "gate", "issue",
                           "reads")}

    async def bench(ctx):
        rnd = random.Random(seed)
        d, cycle, offered = 0, 0, False
        while len(out["cycle"]) < total:
            if d < len(cmds) and not offered and rnd.random() >= gaps:
                offered = True
                out["offer"].append(cycle)
                ctx.set(dut.cmd.payload, layout.const(cmds[d]))
            ctx.set(dut.cmd.valid, offered)
            ready = rnd.random() >= backpressure
            ctx.set(dut.act.ready, ready)
            out["gate"].append(rnd.random() >= gate)
            ctx.set(dut.gate, out["gate"][-1])
            _, _, cmd_ready, valid, data, swap, en, addr, issue, busy = await ctx.tick().sample(
                dut.cmd.ready, dut.act.valid, dut.act.payload.data.as_value(),
                dut.act.payload.swap, dut.rd.en, dut.rd.addr, dut.issue, dut.busy)
            if en:
                out["reads"].append(addr)
            out["issue"].append(issue)
            # busy: some beat of an earlier-accepted command has not been taken yet
            owed = sum(c["compute"]["count"] for c in cmds[:d]) - len(out["cycle"])
            assert busy == (owed > 0), f"cycle {cycle}: busy {busy}, {owed} beats owed"
            if offered and cmd_ready:
                out["accept"].append(cycle)
                d, offered = d + 1, False
            if valid and ready:
                beat = rows.from_bits(data)
                out["data"].append([beat[k] for k in range(cfg.k_per_pass)])
                out["swap"].append(swap)
                out["cycle"].append(cycle)
            cycle += 1
            assert cycle < 8 * total + 100, "the feeder stopped"

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


def contract_cycles(counts: list[int], offers: list[int], gate: list[bool]):
    """The module docstring's cycle contract without backpressure, cycle by cycle: a beat is
    issued in every cycle that has one left and ``gate`` high, presented the cycle after; a
    command is accepted when offered and no beat is left but the one issued this cycle.
    Returns (accept cycles, beat cycles)."""
    accept, beats, left, d = [], [], 0, 0
    for cycle, g in enumerate(gate):
        issued = left > 0 and g
        if issued:
            beats.append(cycle + 1)
        left -= issued
        if d < len(counts) and offers[d] <= cycle and left == 0:
            accept.append(cycle)
            left, d = counts[d], d + 1
    return accept, beats


def check_conv(cfg: ArrayConfig, conv: Conv, rng: np.random.Generator, *,
               backpressure: float, gaps: float, gate: float = 0.0) -> None:
    kp, depth = cfg.k_per_pass, cfg.scratchpad_rows["act"]
    cb = -(-conv.c // kp)
    act = rng.integers(-128, 128, size=(BATCH, conv.h, conv.w, conv.c))
    base = int(rng.integers(0, depth - BATCH * conv.h * conv.w * cb + 1))
    blocks = p_blocks(rng, BATCH * conv.ho * conv.wo)
    swaps = [bool(s) for s in rng.integers(0, 2, size=len(blocks) * conv.kh * conv.kw * cb)]
    cmds = commands(cfg, conv, base, blocks, swaps)
    counts = [c["compute"]["count"] for c in cmds]
    run = run_feeder(cfg, memory_image(cfg, conv, act, base, rng), cmds,
                     seed=int(rng.integers(1 << 31)), backpressure=backpressure, gaps=gaps,
                     gate=gate)
    got = np.array(run["data"])

    # (a) every beat is the expected slice of the input (or zeros), and swap marks first beats
    want, inside = expected_beats(cfg, conv, act, blocks)
    bad = np.argwhere(got != want)
    assert not bad.size, f"{conv}: beat {bad[0][0]} is {got[bad[0][0]]}, want {want[bad[0][0]]}"
    firsts = np.cumsum([0, *counts[:-1]])
    want_swap = np.zeros(len(got), dtype=int)
    want_swap[firsts] = [c["swap"] for c in cmds]
    assert run["swap"] == want_swap.tolist()
    assert len(run["reads"]) == int(inside.sum()), "one scratchpad read per beat in the image"
    assert sum(run["issue"]) == len(got), "issue is high once per beat"

    # (b) beats x weights in the same K order == a direct convolution
    weight = nm_weights(cfg, conv, rng)
    p_total = BATCH * conv.ho * conv.wo
    x = np.zeros((p_total, conv.kh * conv.kw * cb * kp), dtype=np.int64)
    beat = 0
    for p0, count in blocks:
        for k in range(conv.kh * conv.kw * cb):
            x[p0:p0 + count, k * kp:(k + 1) * kp] = got[beat:beat + count]
            beat += count
    packed = nm.pack_nm(k_order_matrix(cfg, conv, weight), cfg.n, cfg.m)
    gemm = nm.gemm_nm(x, packed, act_width=cfg.act_width, acc_width=cfg.acc_width)
    direct = direct_conv(conv, act, weight).reshape(p_total, COUT)
    assert np.array_equal(gemm, direct), f"{conv}: GEMM of the beats != direct convolution"

    # (c) the cycle contract, when the consumer never stalls
    if backpressure == 0:
        accept, beats = contract_cycles(counts, run["offer"], run["gate"])
        assert run["accept"] == accept
        assert run["cycle"] == beats[:len(run["cycle"])]
        issued = [c for c, i in enumerate(run["issue"]) if i]
        assert [c + 1 for c in issued] == run["cycle"], "each beat presented after its issue"
    if backpressure == 0 and gate == 0:   # the closed form of the docstring
        accept, prev = [], None
        for count, offer in zip(counts, run["offer"], strict=True):
            accept.append(offer if prev is None else max(offer, prev))
            prev = accept[-1] + count
        assert run["accept"] == accept
        assert run["cycle"] == [t + 2 + k for count, t in zip(counts, accept, strict=True)
                                for k in range(count)]


@pytest.fixture
def rng(request, seed_for):
    """One seed per test (overrides the multi-seed ``rng`` of conftest)."""
    return np.random.default_rng(seed_for(request.node.nodeid))


@pytest.mark.parametrize("name", CONFIGS)
def test_random_convs_exact_cycles(name, rng):
    """No backpressure, random gaps between commands: beats, oracle and every cycle."""
    cfg = CONFIGS[name]
    for _ in range(5):
        check_conv(cfg, random_conv(rng, cfg.k_per_pass), rng, backpressure=0.0, gaps=0.3)


@pytest.mark.parametrize("name", CONFIGS)
def test_random_convs_gate(name, rng):
    """``gate`` low in random cycles, no backpressure: every beat still right, and each gated
    cycle delays the later beats by exactly one (the contract, cycle by cycle)."""
    cfg = CONFIGS[name]
    for _ in range(3):
        check_conv(cfg, random_conv(rng, cfg.k_per_pass), rng, backpressure=0.0, gaps=0.2,
                   gate=0.4)


@pytest.mark.parametrize("name", CONFIGS)
def test_random_convs_backpressure(name, rng):
    """Random output backpressure, gating and idle gaps: no beat lost, duplicated or
    corrupted."""
    cfg = CONFIGS[name]
    for _ in range(3):
        check_conv(cfg, random_conv(rng, cfg.k_per_pass), rng, backpressure=0.5, gaps=0.2,
                   gate=0.2)


def test_kernel_7(rng):
    """A 7x7 stride-2 stem-like conv, commands back to back: no bubble anywhere."""
    cfg = CONFIGS["2x2-2of4"]
    conv = Conv(h=8, w=9, c=3, kh=7, kw=7, sh=2, sw=2, ph=3, pw=2)
    check_conv(cfg, conv, rng, backpressure=0.0, gaps=0.0)


def random_fields(rng: np.random.Generator) -> tuple[Instruction, Instruction]:
    """A CONFIG and a COMPUTE with random fields, not necessarily any conv's: small sizes,
    any strides, padding, offsets and address steps (the addresses wrap), a first pixel
    anywhere in the output, input coordinates around the image."""
    def r(lo: int, hi: int) -> int:
        return int(rng.integers(lo, hi))

    config = Instruction(Opcode.CONFIG, height=r(1, 6), width=r(1, 6), out_h=r(1, 5),
                         out_w=r(1, 5), step_x=r(0, 1 << 16), wrap_y=r(0, 1 << 16),
                         wrap_n=r(0, 1 << 16), stride_y=r(0, 8), stride_x=r(0, 8),
                         pad_y=r(0, 8), pad_x=r(0, 8))
    compute = Instruction(Opcode.COMPUTE, addr=r(0, 1 << 16), count=r(1, 40), y=r(-8, 8),
                          x=r(-8, 8), oy=r(0, config.out_h), ox=r(0, config.out_w),
                          i=r(0, 16), j=r(0, 16), acc_addr=r(0, 1 << 16), tag=r(0, 2))
    return config, compute


@pytest.mark.parametrize("name", CONFIGS)
def test_walk_is_the_definition(name, rng):
    """For random CONFIG/COMPUTE fields the unit reads exactly the rows
    :func:`sparsa.im2col.walk` gives (taken modulo the scratchpad's depth) and presents zeros for
    its padding beats."""
    cfg = CONFIGS[name]
    depth = cfg.scratchpad_rows["act"]
    image = rng.integers(-128, 128, size=(depth, cfg.k_per_pass))
    for _ in range(6):
        config, compute = random_fields(rng)
        rows = list(walk(config, compute, ceil_log2(depth)))
        cmd = {"config": fields(config), "compute": fields(compute), "swap": 1}
        run = run_feeder(cfg, image, [cmd], seed=int(rng.integers(1 << 31)), backpressure=0.3,
                         gaps=0.0)
        assert run["reads"] == [row for row in rows if row is not None]
        want = [image[row] if row is not None else np.zeros(cfg.k_per_pass) for row in rows]
        np.testing.assert_array_equal(np.array(run["data"]), np.array(want))


def test_bad_arguments():
    with pytest.raises(TypeError, match="cfg must be an ArrayConfig"):
        Im2colFeeder(cfg="2x2")
    with pytest.raises(TypeError):
        Im2colFeeder(CONFIGS["2x2-2of4"])  # keyword-only


@pytest.mark.parametrize("name", CONFIGS)
def test_verilog(name):
    """Elaborates to Verilog with the ports named by role."""
    text = verilog.convert(Im2colFeeder(cfg=CONFIGS[name]), name="im2col")
    for port in ("cmd__payload", "cmd__ready", "act__payload", "act__valid", "act__ready",
                 "rd__addr", "rd__en", "rd__data", "gate", "issue", "busy", "clk", "rst"):
        assert port in text, port
