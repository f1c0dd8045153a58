"""A self-test top for FPGA builds: pseudo-random stimulus into the array, a checksum out.

:class:`SelfTest` feeds the :class:`~sparsa.hw.array.SystolicArray` from on-chip xorshift
generators: every stream payload is a shift register that takes 32 new pseudo-random bits each
time its beat is accepted, so payloads stay stable while ``valid`` waits for ``ready``. Beats
carry a random ``swap`` (a new weight tile), and ``psum.ready`` is random too, so the array sees
backpressure. Every accepted output beat is folded into a 32-bit checksum (:func:`checksum_step`);
its XOR-folded byte (:func:`fold_byte`) is the ``leds`` output. Nothing of the array can be
optimised away.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from sparsa.config import ArrayConfig

from .array import SystolicArray

__all__ = ["SelfTest", "checksum_step", "fold_byte", "xorshift32"]


def xorshift32(x):
    """One step of Marsaglia's xorshift32 on a 32-bit value (never reaches 0 from non-zero)."""
    x = (x ^ (x << 13))[:32]
    x = x ^ (x >> 17)
    return (x ^ (x << 5))[:32]


def checksum_step(checksum, word):
    """One step of a running checksum: rotate the 32-bit ``checksum`` left by one and XOR in the
    XOR of ``word``'s 32-bit lanes (the last one zero-extended)."""
    fold = Const(0, 32)
    for i in range(0, len(word), 32):
        fold = fold ^ word[i:i + 32]
    return Cat(checksum[31], checksum[:31]) ^ fold


def fold_byte(value):
    """The XOR of the four bytes of a 32-bit value (what the LEDs show)."""
    return value[:8] ^ value[8:16] ^ value[16:24] ^ value[24:]


class SelfTest(wiring.Component):
    """The array of ``cfg`` between pseudo-random stimulus and a checksum.

    Ports
    -----
    leds : Out(8)
        XOR-fold of ``checksum``.
    checksum : Out(32)
        Running checksum of every accepted ``psum`` beat.
    """

    def __init__(self, cfg: ArrayConfig):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")
        self.cfg = cfg
        self.array = SystolicArray(cfg)
        super().__init__({"leds": Out(8), "checksum": Out(32)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.array = array = self.array

        def source(name: str, stream, seed: int):
            """Drive ``stream`` with pseudo-random payloads."""
            width = len(stream.payload.as_value())
            state = Signal(32, name=f"{name}_lfsr", init=seed)
            payload = Signal(width, name=f"{name}_data", init=seed)
            with m.If(stream.valid & stream.ready):
                m.d.sync += [state.eq(xorshift32(state)),
                             payload.eq(Cat(state, payload)[:width])]
            m.d.comb += [stream.payload.eq(payload), stream.valid.eq(1)]

        source("weight", array.weight, 0x1234_5678)
        source("act", array.act, 0x0BAD_F00D)
        source("psum_in", array.psum_in, 0x2545_F491)

        # A free-running generator for the output backpressure (ready about 3 cycles in 4).
        ctrl = Signal(32, init=0x7FEB_352D)
        m.d.sync += ctrl.eq(xorshift32(ctrl))
        m.d.comb += array.psum.ready.eq(ctrl[0] | ctrl[1])

        with m.If(array.psum.valid & array.psum.ready):
            m.d.sync += self.checksum.eq(checksum_step(self.checksum,
                                                       array.psum.payload.as_value()))
        m.d.comb += self.leds.eq(fold_byte(self.checksum))
        return m
