"""Layers with their operands in memory (:mod:`sparsa.sw.memory_layout`, ``assemble_layer(...,
in_memory=True)``, :func:`sparsa.sim.memory_image.place`): the golden executor running the
program from memory writes outputs equal to an independent computation (torch's convolution, a
float64 matmul), the input tensor sits in memory in its natural layout (the bytes of the NHWC /
``(P, K)`` int8 tensor), each weight tile is stored once however often it is loaded, and data that
contradicts the program is refused."""

from __future__ import annotations

import numpy as np
import pytest

from sparsa.config import ArrayConfig
from sparsa.isa import LOADS, Opcode, data_in_bytes
from sparsa.models.graph import Layer
from sparsa.sim.golden_accel import GoldenAccelerator
from sparsa.sim.memory_image import place
from sparsa.sim.model_run import layer_data, reference
from sparsa.sw.assemble import assemble_layer, host_input
from sparsa.sw.schedule import schedule_layer

CFG = ArrayConfig(rows=4, cols=4, n=2, m=4, act_buffer_kib=4, weight_buffer_kib=2,
                  acc_buffer_kib=4)


def _conv(name: str, c_in: int, c_out: int, size: int, kernel: int, stride: int, pad: int,
          groups: int = 1, nm: tuple[int, int] | None = (2, 4)) -> Layer:
    out = (size + 2 * pad - kernel) // stride + 1
    return Layer(name, "conv2d", (1, c_in, size, size), (1, c_out, out, out),
                 {"kernel": (kernel, kernel), "stride": (stride, stride),
                  "padding": (pad, pad), "dilation": (1, 1), "groups": groups}, nm=nm)


LAYERS = [
    _conv("3x3 s1 p1", 12, 10, 9, 3, 1, 1),
    _conv("3x3 s2 p1, dense", 6, 9, 10, 3, 2, 1, nm=None),
    _conv("1x1 s2", 20, 8, 8, 1, 2, 0),
    _conv("depthwise 3x3", 8, 8, 7, 3, 1, 1, groups=8, nm=None),
    _conv("7x7 s2 p3 stem", 3, 8, 16, 7, 2, 3, nm=None),
    Layer("linear, K over many passes", "linear", (10, 200), (10, 12), nm=(2, 4)),
    Layer("attention matmul", "matmul", (2, 6, 24), (2, 6, 6), {"groups": 2, "k": 24}),
]

# weights over the 2 KiB weight scratchpad, activations over several P blocks: tiles reloaded
RELOADS = _conv("3x3, weights reloaded", 64, 64, 16, 3, 1, 1)


def _in_memory(layer: Layer, seed: int):
    sched = schedule_layer(layer, CFG)
    data = layer_data(CFG, sched, layer, np.random.default_rng(seed))
    asm = assemble_layer(CFG, sched.tiling, data.x, data.w, multiplier=data.multiplier,
                         shift=data.shift, in_memory=True)
    return sched, data, asm, place(CFG, asm.program, asm.data_in, asm.memory)


@pytest.mark.parametrize("layer", LAYERS, ids=[lay.name for lay in LAYERS])
def test_golden_from_memory_equals_reference(layer, seed_for, request):
    seed = seed_for(request.node.nodeid)
    sched, data, asm, mp = _in_memory(layer, seed)
    memory = bytearray(mp.image())
    GoldenAccelerator(CFG).run_in_memory(mp.program, memory)
    rows = mp.read_outputs(CFG, lambda a, n: bytes(memory[a:a + n]))
    assert np.array_equal(asm.collect(rows), reference(layer, data))
    # the input in its natural layout: the int8 tensor the layer reads, row-major, once
    x = host_input(sched.tiling.low, data.x).astype(np.int8).tobytes()
    at = asm.memory.act_base
    assert bytes(memory[at:at + len(x)]) == x
    # outputs in their natural layout too: (pixels, columns) int8 at out_base
    out = reference(layer, data).astype(np.int8).tobytes()
    assert bytes(memory[asm.memory.out_base:asm.memory.out_base + len(out)]) == out


def test_weight_tiles_stored_once():
    """A layer whose weights do not stay resident loads tiles again: from the same address,
    and the weight region holds each distinct tile once."""
    _, _, asm, _ = _in_memory(RELOADS, 1)
    loads = [i for i in asm.program if i.opcode == Opcode.LOAD_WEIGHT]
    tile = CFG.rows * data_in_bytes(CFG, Opcode.LOAD_WEIGHT)
    addresses = {i.dram for i in loads}
    assert len(loads) > len(addresses)      # reloaded
    assert addresses == {asm.memory.weight_base + k * tile for k in range(len(addresses))}


def test_contradicting_data_is_refused():
    _, _, asm, _ = _in_memory(RELOADS, 2)
    first = next(k for k, i in enumerate(asm.program) if i.opcode == Opcode.LOAD_WEIGHT)
    dram = asm.program[first].dram
    again = next(k for k, i in enumerate(asm.program)
                 if k > first and i.opcode == Opcode.LOAD_WEIGHT and i.dram == dram)
    # the data_in rows of the second load of that tile, changed
    before = sum(1 if i.opcode == Opcode.LOAD_SCALE else i.count
                 for i in asm.program[:again] if i.opcode in LOADS)
    data_in = list(asm.data_in)
    data_in[before] ^= 1
    with pytest.raises(ValueError, match=f"LOAD_WEIGHT at 0x{dram:x} loads bytes that an earlier"):
        place(CFG, asm.program, data_in, asm.memory)
