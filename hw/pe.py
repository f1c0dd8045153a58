"""The N:M sparse processing element."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sparsa.config import ArrayConfig

from .layouts import pe_act, pe_weights

__all__ = ["SparsePE"]


class SparsePE(wiring.Component):
    """One weight-stationary PE of an N:M array.

    It keeps two banks of ``n`` weight values and ``n`` indices. The activation vector arriving
    from the left carries a ``bank`` bit that selects the active bank; the other bank is the
    shadow, written through ``w_*`` while the active one computes. Flipping the bank bit at a
    tile boundary is the swap: because the bit travels with the data, each PE swaps exactly when
    the first beat of the new tile reaches it.

    Each enabled cycle (``en``) the PE selects ``n`` of its ``m`` activations by index (``n``
    M:1 multiplexers; none when ``n == m``), multiplies them with the weights, adds the partial
    sum from above in a wrapping ``acc_width``-bit adder, and registers the sum (down) and the
    activation vector (right). With ``cfg.pipeline_depth`` = 1 the products are registered
    before the adder, with 2 also the selected activations and their weights before the
    multipliers: the sum then belongs to the activations of ``pipeline_depth`` enabled cycles
    earlier, and ``psum_in`` must arrive that much later.

    Zero gating (operand isolation): a slot whose selected activation is zero contributes a zero
    product without toggling its multiplier. With ``pipeline_depth >= 2`` the slot's operand
    registers (``sel_q``/``val_q``) hold their old values and a registered flag forces the
    product to zero; with shallower pipelines the operands are combinational, so the weight
    operand is forced to zero with the activation (AND-style isolation; the multiplier's inputs
    then stay at zero through runs of zero activations). Outputs and timing are unchanged.
    Only a zero *activation* gates: a zero weight is static (padding slots of a group with fewer
    than ``n`` nonzeros) and is not detected, so it multiplies like any other value.

    ``gated`` is the number of slots gated for the activations at ``act_in`` (combinational); an
    activity count only, which the array sums for the accelerator's ``gated_macs`` counter.

    Ports
    -----
    en : In(1)
        Advance the datapath registers this cycle (the array's global stall).
    act_in, act_out : In/Out(pe_act)
        ``m`` activations and the bank bit; ``act_out`` is ``act_in`` one enabled cycle later.
    psum_in, psum_out : In/Out(signed(acc_width))
        Partial sum from above, and the registered result.
    w_en, w_bank, w_data : In
        Write ``w_data`` (``n`` values and indices) into bank ``w_bank`` at the next clock edge.
    gated : Out(range(n + 1))
        Slots whose selected activation at ``act_in`` is zero (see above).
    """

    def __init__(self, cfg: ArrayConfig):
        if not isinstance(cfg, ArrayConfig):
            raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")
        self.cfg = cfg
        super().__init__({
            "en": In(1),
            "act_in": In(pe_act(cfg)),
            "act_out": Out(pe_act(cfg)),
            "psum_in": In(signed(cfg.acc_width)),
            "psum_out": Out(signed(cfg.acc_width)),
            "w_en": In(1),
            "w_bank": In(1),
            "w_data": In(pe_weights(cfg)),
            "gated": Out(range(cfg.n + 1)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()

        layout = pe_weights(cfg)
        banks = [Signal(layout, name=f"bank{i}") for i in range(2)]
        with m.If(self.w_en):
            with m.If(self.w_bank):
                m.d.sync += banks[1].eq(self.w_data)
            with m.Else():
                m.d.sync += banks[0].eq(self.w_data)

        active = layout(Mux(self.act_in.bank, banks[1].as_value(), banks[0].as_value()))

        selected, values = [], []
        for slot in range(cfg.n):
            sel = Signal(signed(cfg.act_width), name=f"sel{slot}")
            index = slot if cfg.is_dense else active.indices[slot]
            m.d.comb += sel.eq(self.act_in.data[index])
            selected.append(sel)
            values.append(active.values[slot])

        zero = [Signal(name=f"zero{slot}") for slot in range(cfg.n)]
        m.d.comb += [z.eq(sel == 0) for z, sel in zip(zero, selected, strict=True)]
        m.d.comb += self.gated.eq(sum(zero))

        def stage(name, values, shape, hold=None):
            """Register ``values`` (one pipeline stage, advancing with ``en``); a register
            whose ``hold`` flag is set keeps its value."""
            regs = [Signal(shape, name=f"{name}{i}") for i in range(len(values))]
            for i, (reg, value) in enumerate(zip(regs, values, strict=True)):
                with m.If(self.en & (1 if hold is None else ~hold[i])):
                    m.d.sync += reg.eq(value)
            return regs

        # The bank is read only in the cycle the activations arrive, whatever the depth, so
        # the swap/load timing of the array does not depend on it.
        if cfg.pipeline_depth >= 2:
            # operand isolation: a zero activation holds both operand registers
            selected = stage("sel_q", selected, signed(cfg.act_width), hold=zero)
            values = stage("val_q", values, signed(cfg.weight_width), hold=zero)
            zero = stage("zero_q", zero, 1)
        else:
            values = [Mux(z, 0, v) for z, v in zip(zero, values, strict=True)]
        products = [a * w for a, w in zip(selected, values, strict=True)]
        if cfg.pipeline_depth >= 2:
            products = [Mux(z, 0, p) for z, p in zip(zero, products, strict=True)]
        if cfg.pipeline_depth >= 1:
            products = stage("prod_q", products, signed(cfg.act_width + cfg.weight_width))

        with m.If(self.en):
            m.d.sync += [
                self.psum_out.eq(self.psum_in + sum(products)),
                self.act_out.eq(self.act_in),
            ]
        return m
