"""Off-chip ports as token buckets: cycle by cycle (:class:`DramPort`, what the testbenches'
drivers apply) and in closed form (:func:`transfer`, what the cycle model places beats with).

A port of ``rate`` bytes per cycle holds a credit of at most ``cap`` bytes: a beat of ``B`` bytes
can transfer in a cycle that starts with at least ``B`` bytes of credit (one beat per cycle at
most); each cycle adds ``rate`` bytes, up to ``cap``. With ``cap`` at least the largest beat plus
``rate`` (:func:`sparsa.sw.accel_timing.port_caps`), the cap only ever cuts the credit in a cycle
that transfers a beat smaller than ``rate``, or while no beat is offered.

The closed form takes the beats of one transfer (a LOAD or a STORE), offered from a cycle ``s``
on to an always-ready consumer. Their sizes are :class:`Sizes`: periodic, ``period - 1`` beats
of ``full`` bytes then one of ``last`` (a LOAD_ACT's rows: a pixel's channel blocks, the last one
holding only the real channels, :func:`sparsa.isa.act_row_bytes`), or all equal. Equal beats
have an exact formula (:func:`_uniform`); a periodic transfer is a chain of equal runs, and since
the port's state at the start of a period is only its credit (an integer in ``0 .. cap``), the
periods repeat once a credit repeats: the beats are placed with at most ``cap + 1`` periods
worked out, whatever the count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Beats", "DramPort", "Port", "Sizes", "transfer"]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class DramPort:
    """A token bucket, cycle by cycle (what a testbench's source or sink applies): a beat of
    ``nbytes`` may transfer in a cycle when :meth:`can` says so; :meth:`tick` ends the cycle."""

    def __init__(self, rate: int, cap: int):
        if rate < 1 or cap < rate:
            raise ValueError(f"a DRAM port needs rate >= 1 and cap >= rate, not {rate}, {cap}")
        self.rate, self.cap, self.credit = rate, cap, cap

    def can(self, nbytes: int) -> bool:
        return self.credit >= nbytes

    def tick(self, sent: int = 0) -> None:
        self.credit = min(self.cap, self.credit - sent + self.rate)


@dataclass(frozen=True)
class Sizes:
    """Bytes of the beats of one transfer: beat ``j`` has ``last`` bytes when ``j % period ==
    period - 1``, else ``full``."""

    full: int
    last: int
    period: int = 1

    @classmethod
    def uniform(cls, nbytes: int) -> Sizes:
        return cls(nbytes, nbytes, 1)

    def __post_init__(self) -> None:
        if min(self.full, self.last, self.period) < 1:
            raise ValueError(f"beat sizes and period must be positive, not {self}")

    def size(self, j: int) -> int:
        return self.last if j % self.period == self.period - 1 else self.full

    @property
    def is_uniform(self) -> bool:
        return self.period == 1 or self.full == self.last


@dataclass(frozen=True)
class Port:
    """The closed form's state: credit ``c`` at the start of cycle ``t``, no beat in between
    (``t`` is a cycle: the cycle model shifts it with the rest of its state)."""

    t: int = field(metadata={"cycle": True})
    c: int

    def credit_at(self, s: int, rate: int, cap: int) -> int:
        """The credit at the start of cycle ``s >= t`` when no beat moves before it."""
        return min(cap, self.c + rate * (s - self.t))


class Beats:
    """Cycle of each beat of one transfer (:meth:`at`)."""

    def at(self, j: int) -> int:   # pragma: no cover - every transfer overrides it
        raise NotImplementedError


class _UniformBeats(Beats):
    """Equal beats of ``nbytes`` from cycle ``s`` with credit ``cs``: ``t0 + j`` when the port
    keeps up (``rate >= nbytes``), else ``s + max(j, ceil((nbytes*(j+1) - cs) / rate))``."""

    __slots__ = ("cs", "nbytes", "rate", "s", "t0")

    def __init__(self, s: int, cs: int, nbytes: int, rate: int):
        self.s, self.cs, self.nbytes, self.rate = s, cs, nbytes, rate
        self.t0 = s + max(0, _ceil_div(nbytes - cs, rate)) if rate >= nbytes else None

    def at(self, j: int) -> int:
        if self.t0 is not None:
            return self.t0 + j
        return self.s + max(j, _ceil_div(self.nbytes * (j + 1) - self.cs, self.rate))


def _uniform(s: int, cs: int, count: int, nbytes: int, rate: int, cap: int
             ) -> tuple[_UniformBeats, Port]:
    """``count >= 1`` beats of ``nbytes`` offered from cycle ``s`` with credit ``cs``: their
    cycles and the port after the last one. When ``rate >= nbytes`` the credit never falls after
    the first beat (the cap applies to a sum of non-negative steps: once, at the end); otherwise
    it never reaches the cap (it stays below ``nbytes`` while a beat waits)."""
    beats = _UniformBeats(s, cs, nbytes, rate)
    if beats.t0 is not None:
        ct0 = min(cap, cs + rate * (beats.t0 - s))
        return beats, Port(beats.t0 + count, min(cap, ct0 + count * (rate - nbytes)))
    last = beats.at(count - 1)
    return beats, Port(last + 1, cs + rate * (last + 1 - s) - nbytes * count)


class _PeriodicBeats(Beats):
    """Periodic sizes: the port at the start of each period, worked out period by period until
    its credit repeats (then the periods repeat, shifted in time)."""

    def __init__(self, s: int, cs: int, sizes: Sizes, rate: int, cap: int):
        self.sizes, self.rate, self.cap = sizes, rate, cap
        self.starts: list[tuple[int, int]] = [(s, cs)]
        self.seen = {cs: 0}
        self.cycle: tuple[int, int, int] | None = None   # (first, length, cycles per repeat)

    def _within(self, t: int, c: int, r: int) -> tuple[Beats, Port]:
        """Beats ``0 .. r-1`` of a period from ``(t, c)``: the run of full beats, and the port
        after it."""
        full = self.sizes.full
        return _uniform(t, c, r, full, self.rate, self.cap) if r else (None, Port(t, c))

    def _period(self, t: int, c: int) -> Port:
        _, port = self._within(t, c, self.sizes.period - 1)
        return _uniform(port.t, port.c, 1, self.sizes.last, self.rate, self.cap)[1]

    def start(self, k: int) -> tuple[int, int]:
        """Cycle and credit at the start of period ``k``."""
        while self.cycle is None and len(self.starts) <= k:
            port = self._period(*self.starts[-1])
            first = self.seen.get(port.c)
            if first is None:
                self.seen[port.c] = len(self.starts)
                self.starts.append((port.t, port.c))
            else:
                self.cycle = (first, len(self.starts) - first, port.t - self.starts[first][0])
        if k < len(self.starts):
            return self.starts[k]
        first, length, shift = self.cycle
        repeats, i = divmod(k - first, length)
        t, c = self.starts[first + i]
        return t + repeats * shift, c

    def at(self, j: int) -> int:
        k, r = divmod(j, self.sizes.period)
        t, c = self.start(k)
        if r < self.sizes.period - 1:      # a full beat: beat r of the period's full run
            return _UniformBeats(t, c, self.sizes.full, self.rate).at(r)
        port = self._within(t, c, r)[1]    # the last beat, after the full run
        return _UniformBeats(port.t, port.c, self.sizes.last, self.rate).at(0)

    def end(self, count: int) -> Port:
        """The port after beat ``count - 1``."""
        k, r = divmod(count, self.sizes.period)
        return self._within(*self.start(k), r)[1]


def transfer(port: Port, s: int, count: int, sizes: Sizes, rate: int, cap: int
             ) -> tuple[Beats, Port]:
    """``count >= 1`` beats of ``sizes``, the first offered from cycle ``s >= port.t``: their
    cycles, and the port after the last one."""
    cs = port.credit_at(s, rate, cap)
    if sizes.is_uniform:
        return _uniform(s, cs, count, sizes.full if sizes.period > 1 else sizes.last, rate, cap)
    beats = _PeriodicBeats(s, cs, sizes, rate, cap)
    return beats, beats.end(count)
