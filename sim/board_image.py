"""The memory image of the board build and the checksum its LEDs must show.

``sparsa bitstream --top accelerator`` puts the memory-mapped accelerator, an on-chip RAM and a
tiny host on the board (:class:`sparsa.hw.board_soc.BoardSoc`, which takes plain words). This
module makes those words: a small GEMM program (:func:`sparsa.sim.programs.gemm_program`: two K
passes, two column tiles, random accumulators, ReLU, some zero activations; every opcode, both
kinds of STORE) linked into memory (:func:`sparsa.sim.memory_image.link`), cut into bus words.
The expected checksum is the golden model's
(:meth:`~sparsa.sim.golden_accel.GoldenAccelerator.run_in_memory` on the same image) over the
words that hold the outputs, folded as :func:`checksum` says (the same rule as
:func:`sparsa.hw.selftest.checksum_step`, written here again in Python).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsa.config import ArrayConfig

from .golden_accel import GoldenAccelerator
from .memory_image import MemoryProgram, link
from .programs import gemm_program

__all__ = ["BoardImage", "board_image", "checksum", "leds"]


def checksum(words, data_bits: int) -> int:
    """Fold ``data_bits``-bit ``words`` in order: rotate the 32-bit sum left by one, XOR in the
    XOR of the word's 32-bit lanes."""
    c = 0
    for word in words:
        fold = 0
        for i in range(0, data_bits, 32):
            fold ^= (word >> i) & 0xFFFF_FFFF
        c = (((c << 1) | (c >> 31)) & 0xFFFF_FFFF) ^ fold
    return c


def leds(value: int) -> int:
    """The byte the LEDs show for a checksum: the XOR of its four bytes."""
    return (value ^ (value >> 8) ^ (value >> 16) ^ (value >> 24)) & 0xFF


@dataclass(frozen=True)
class BoardImage:
    """What :class:`~sparsa.hw.board_soc.BoardSoc` is built with, and what it must show."""

    words: tuple[int, ...]          # the RAM's initial contents, bus words from address 0
    depth: int                      # RAM words (a power of two)
    prog_base: int
    prog_len: int
    check_first: int                # the output region, in bus words
    check_words: int
    checksum: int                   # the golden model's, over the output words
    program: MemoryProgram
    expected: tuple[int, ...]       # all ``depth`` words after the golden model's run

    @property
    def leds(self) -> int:
        return leds(self.checksum)

    def soc_args(self) -> dict:
        """Keyword arguments of :class:`~sparsa.hw.board_soc.BoardSoc` (all but ``cfg``)."""
        return {"image": self.words, "depth": self.depth, "prog_base": self.prog_base,
                "prog_len": self.prog_len, "check_first": self.check_first,
                "check_words": self.check_words}


def _words(memory: bytes | bytearray, bus: int) -> list[int]:
    return [int.from_bytes(memory[a:a + bus], "little") for a in range(0, len(memory), bus)]


def board_image(cfg: ArrayConfig, *, seed: int = 0, pixels: int | None = None) -> BoardImage:
    """The board's test program for ``cfg`` (``pixels`` output rows, default ``2 * rows``),
    random operands from ``seed``, linked, with the golden checksum of its outputs."""
    rng = np.random.default_rng(seed)
    p = 2 * cfg.rows if pixels is None else pixels
    prog = gemm_program(cfg, rng, p=p, passes=2, col_tiles=2, load_acc=True, relu=True,
                        zero_fraction=0.25)
    mp = link(cfg, prog.program, prog.data_in)
    bus = cfg.axi_data_bits // 8
    depth = 2
    while depth * bus < mp.size:
        depth *= 2
    memory = mp.image() + bytearray(depth * bus - mp.size)
    words = _words(memory, bus)
    while words and words[-1] == 0:
        words.pop()
    GoldenAccelerator(cfg).run_in_memory(mp.program, memory)
    expected = _words(memory, bus)
    first = min(out.dram for out in mp.outputs) // bus
    end = max(out.dram + out.stride * (out.count - 1)
              + out.channels * (cfg.acc_width if out.raw else cfg.act_width) // 8
              for out in mp.outputs)
    last = -(-end // bus)
    return BoardImage(words=tuple(words), depth=depth, prog_base=mp.prog_base,
                      prog_len=mp.prog_len, check_first=first, check_words=last - first,
                      checksum=checksum(expected[first:last], cfg.axi_data_bits), program=mp,
                      expected=tuple(expected))
