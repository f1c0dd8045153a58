"""The accelerator cycle model's parts that the RTL tests do not isolate: the closed-form DRAM
port against the cycle-by-cycle token bucket, and the state key (time-shift invariance) that
long programs are memoised on."""

from __future__ import annotations

import pytest

from sparsa.config import ArrayConfig
from sparsa.sim.programs import random_gemm_program
from sparsa.sw.accel_timing import AccelTimer, DramPort, _Port, program_timing

SMALL = dict(act_buffer_kib=1, weight_buffer_kib=1, acc_buffer_kib=1)


def test_port_closed_form_equals_the_bucket_cycle_by_cycle(rng):
    """Transfers of random sizes and lengths, each offered from a random later cycle to an
    always-ready consumer: the closed form places every beat where the bucket does."""
    for _ in range(40):
        rate = int(rng.integers(1, 20))
        sizes = [int(v) for v in rng.integers(1, 40, size=3)]
        cap = max(sizes) + rate
        bucket, closed = DramPort(rate, cap), _Port(rate, cap)
        cycle, start = 0, 0
        for _ in range(6):
            start += int(rng.integers(0, 30))
            count, nbytes = int(rng.integers(1, 12)), sizes[int(rng.integers(0, 3))]
            beats = closed.beats(start, count, nbytes)
            predicted = [beats.at(j) for j in range(count)]
            while cycle < start:            # idle: credit builds up to the cap
                bucket.tick()
                cycle += 1
            seen = []
            while len(seen) < count:
                if bucket.can(nbytes):
                    seen.append(cycle)
                    bucket.tick(nbytes)
                else:
                    bucket.tick()
                cycle += 1
            assert seen == predicted, (rate, nbytes, count)
            start = seen[-1] + 1


def test_dram_port_rejects_bad_rates():
    with pytest.raises(ValueError, match="rate >= 1"):
        DramPort(0, 10)
    with pytest.raises(ValueError, match="dram_bytes_per_cycle"):
        AccelTimer(ArrayConfig(rows=2, cols=2, n=2, m=4), dram_bytes_per_cycle=0)


@pytest.mark.parametrize("rate", [None, 2, 7])
def test_key_restore_is_a_time_shift(rate, rng):
    """Cut a program anywhere, carry only the key into a fresh timer whose clock is offset by an
    arbitrary amount: the rest of the program dispatches at the same cycles plus the offset."""
    cfg = ArrayConfig(rows=2, cols=3, n=1, m=4, **SMALL)
    for order in ("k_inner", "cols_inner"):
        prog = random_gemm_program(cfg, rng, order=order, max_beats=12).program
        whole = program_timing(cfg, prog, dram_bytes_per_cycle=rate)
        for cut in sorted(set(int(v) for v in rng.integers(1, len(prog), size=5))):
            head = AccelTimer(cfg, dram_bytes_per_cycle=rate)
            head.run(prog[:cut])
            offset = int(rng.integers(-1000, 1000))
            tail = AccelTimer(cfg, dram_bytes_per_cycle=rate, trace=True)
            tail.restore(head.key(), head.last_dispatch + offset)
            tail.run(prog[cut:])
            assert [d - offset for d in tail.dispatch] == whole.dispatch[cut:]
            assert [c - offset for c in tail.out_cycles] == \
                whole.out_cycles[len(whole.out_cycles) - len(tail.out_cycles):]
