"""AXI4 and AXI4-Lite signatures: one per channel, members named by the AMBA AXI spec.

Every channel signature is written from the view of the channel's *source* (``*valid`` and the
payload flow out, ``*ready`` flows in), like :class:`amaranth.lib.stream.Signature`. A port bundles
them from the manager's view: the manager drives ``ar``, ``aw`` and ``w`` and receives ``r`` and
``b``. A subordinate uses the same signature flipped (``In(AxiLiteSignature(...))``).

Widths come from :class:`~sparsa.config.ArrayConfig` (``axi_addr_bits``, ``axi_data_bits``;
:meth:`AxiReadSignature.for_config` and friends); the ID width is a property of the port
(:data:`ID_BITS`), not of the accelerator: each DMA engine uses one ID, so its reads return in
order and its write responses arrive in order.

Generated Verilog and cocotbext-axi
-----------------------------------
Amaranth names a port ``path__field``: a component member ``axi: Out(AxiReadSignature(...))``
becomes ``axi__ar__araddr``, ``axi__ar__arvalid``, ..., ``axi__r__rdata``, ``axi__r__rready``; a
member ``csr: In(AxiLiteSignature(...))`` becomes ``csr__aw__awaddr``, ..., ``csr__r__rresp``.
cocotbext-axi binds through cocotb-bus ``Bus`` objects, one per channel, named
``<prefix><bus_separator><signal>``; each channel has its own prefix here, so build the channel
buses one by one with ``bus_separator="__"`` and join them::

    from cocotbext.axi import AxiARBus, AxiReadBus, AxiRBus
    ar = AxiARBus.from_prefix(dut, "axi__ar", bus_separator="__")
    r = AxiRBus.from_prefix(dut, "axi__r", bus_separator="__")
    bus = AxiReadBus.from_channels(ar, r)

:func:`sparsa.sim.axi_tb.manager_bus` (either half, or both) and
:func:`~sparsa.sim.axi_tb.lite_bus` do exactly this for the DMA engines and the CSR block.
"""

from __future__ import annotations

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sparsa.config import ArrayConfig

__all__ = [
    "BURST_INCR",
    "ID_BITS",
    "LITE_DATA_BITS",
    "MAX_BURST_BEATS",
    "PAGE_BYTES",
    "RESP_OKAY",
    "RESP_SLVERR",
    "AxiARSignature",
    "AxiAWSignature",
    "AxiBSignature",
    "AxiLiteSignature",
    "AxiManagerSignature",
    "AxiRSignature",
    "AxiReadSignature",
    "AxiWSignature",
    "AxiWriteSignature",
]

# Spec constants (AMBA AXI and ACE Protocol Specification, IHI 0022).
ID_BITS = 4               # ID width of the sparsa ports; every engine uses a single ID
MAX_BURST_BEATS = 256     # AXI4 INCR bursts: AxLEN + 1 <= 256
PAGE_BYTES = 4096         # a burst must not cross a 4 KiB address boundary
BURST_INCR = 0b01         # AxBURST encoding
RESP_OKAY = 0b00          # xRESP encodings: OKAY, EXOKAY, SLVERR, DECERR
RESP_SLVERR = 0b10
LITE_DATA_BITS = 32       # AXI4-Lite data width of the CSR port


def _check_bits(name: str, value, *, low: int, high: int, power_of_two: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not low <= value <= high or (power_of_two and value & (value - 1)):
        kind = "a power of two" if power_of_two else "an integer"
        raise ValueError(f"{name} must be {kind} from {low} to {high}, not {value!r}")


class _Channel(wiring.Signature):
    """A channel: ``<prefix>valid`` and the payload out, ``<prefix>ready`` in."""

    def __init__(self, prefix: str, payload: dict[str, int]):
        members = {prefix + name: Out(width) for name, width in payload.items()}
        members[prefix + "valid"] = Out(1)
        members[prefix + "ready"] = In(1)
        super().__init__(members)


class AxiARSignature(_Channel):
    """Read address channel: ``araddr``, ``arlen`` (beats - 1), ``arsize`` (log2 bytes per
    beat), ``arburst``, ``arid``, ``arvalid``/``arready``."""

    def __init__(self, *, addr_bits: int, id_bits: int = ID_BITS):
        _check_bits("addr_bits", addr_bits, low=12, high=64)
        _check_bits("id_bits", id_bits, low=1, high=32)
        self.addr_bits, self.id_bits = addr_bits, id_bits
        super().__init__("ar", {"addr": addr_bits, "len": 8, "size": 3, "burst": 2,
                                "id": id_bits})


class AxiAWSignature(_Channel):
    """Write address channel: ``awaddr``, ``awlen``, ``awsize``, ``awburst``, ``awid``,
    ``awvalid``/``awready``."""

    def __init__(self, *, addr_bits: int, id_bits: int = ID_BITS):
        _check_bits("addr_bits", addr_bits, low=12, high=64)
        _check_bits("id_bits", id_bits, low=1, high=32)
        self.addr_bits, self.id_bits = addr_bits, id_bits
        super().__init__("aw", {"addr": addr_bits, "len": 8, "size": 3, "burst": 2,
                                "id": id_bits})


class AxiRSignature(_Channel):
    """Read data channel (source: the subordinate): ``rdata``, ``rresp``, ``rlast``, ``rid``,
    ``rvalid``/``rready``."""

    def __init__(self, *, data_bits: int, id_bits: int = ID_BITS):
        _check_bits("data_bits", data_bits, low=8, high=1024, power_of_two=True)
        _check_bits("id_bits", id_bits, low=1, high=32)
        self.data_bits, self.id_bits = data_bits, id_bits
        super().__init__("r", {"data": data_bits, "resp": 2, "last": 1, "id": id_bits})


class AxiWSignature(_Channel):
    """Write data channel: ``wdata``, ``wstrb`` (one bit per byte), ``wlast``,
    ``wvalid``/``wready`` (AXI4 has no ``wid``)."""

    def __init__(self, *, data_bits: int):
        _check_bits("data_bits", data_bits, low=8, high=1024, power_of_two=True)
        self.data_bits = data_bits
        super().__init__("w", {"data": data_bits, "strb": data_bits // 8, "last": 1})


class AxiBSignature(_Channel):
    """Write response channel (source: the subordinate): ``bresp``, ``bid``,
    ``bvalid``/``bready``."""

    def __init__(self, *, id_bits: int = ID_BITS):
        _check_bits("id_bits", id_bits, low=1, high=32)
        self.id_bits = id_bits
        super().__init__("b", {"resp": 2, "id": id_bits})


class AxiReadSignature(wiring.Signature):
    """The read half of an AXI4 manager port: ``ar`` out, ``r`` in."""

    def __init__(self, *, addr_bits: int, data_bits: int, id_bits: int = ID_BITS):
        self.addr_bits, self.data_bits, self.id_bits = addr_bits, data_bits, id_bits
        super().__init__({
            "ar": Out(AxiARSignature(addr_bits=addr_bits, id_bits=id_bits)),
            "r": In(AxiRSignature(data_bits=data_bits, id_bits=id_bits)),
        })

    @classmethod
    def for_config(cls, cfg: ArrayConfig) -> AxiReadSignature:
        return cls(addr_bits=cfg.axi_addr_bits, data_bits=cfg.axi_data_bits)


class AxiWriteSignature(wiring.Signature):
    """The write half of an AXI4 manager port: ``aw`` and ``w`` out, ``b`` in."""

    def __init__(self, *, addr_bits: int, data_bits: int, id_bits: int = ID_BITS):
        self.addr_bits, self.data_bits, self.id_bits = addr_bits, data_bits, id_bits
        super().__init__({
            "aw": Out(AxiAWSignature(addr_bits=addr_bits, id_bits=id_bits)),
            "w": Out(AxiWSignature(data_bits=data_bits)),
            "b": In(AxiBSignature(id_bits=id_bits)),
        })

    @classmethod
    def for_config(cls, cfg: ArrayConfig) -> AxiWriteSignature:
        return cls(addr_bits=cfg.axi_addr_bits, data_bits=cfg.axi_data_bits)


class AxiManagerSignature(wiring.Signature):
    """A full AXI4 manager port, seen from the manager: ``ar``, ``aw``, ``w`` out; ``r``, ``b``
    in. ``wiring.connect`` it to a subordinate holding ``In(AxiManagerSignature(...))``."""

    def __init__(self, *, addr_bits: int, data_bits: int, id_bits: int = ID_BITS):
        self.addr_bits, self.data_bits, self.id_bits = addr_bits, data_bits, id_bits
        read = AxiReadSignature(addr_bits=addr_bits, data_bits=data_bits, id_bits=id_bits)
        write = AxiWriteSignature(addr_bits=addr_bits, data_bits=data_bits, id_bits=id_bits)
        super().__init__({**read.members, **write.members})

    @classmethod
    def for_config(cls, cfg: ArrayConfig) -> AxiManagerSignature:
        return cls(addr_bits=cfg.axi_addr_bits, data_bits=cfg.axi_data_bits)


class AxiLiteSignature(wiring.Signature):
    """An AXI4-Lite port seen from the manager (the host): channels ``aw`` (``awaddr``,
    ``awprot``), ``w`` (``wdata``, ``wstrb``), ``b`` (``bresp``), ``ar`` (``araddr``,
    ``arprot``) and ``r`` (``rdata``, ``rresp``), each with its ``*valid``/``*ready``.
    A subordinate holds ``In(AxiLiteSignature(...))``, or :meth:`subordinate`."""

    def __init__(self, *, addr_bits: int, data_bits: int = LITE_DATA_BITS):
        _check_bits("addr_bits", addr_bits, low=2, high=64)
        if data_bits not in (32, 64):
            raise ValueError(f"AXI4-Lite data_bits must be 32 or 64, not {data_bits!r}")
        self.addr_bits, self.data_bits = addr_bits, data_bits
        super().__init__({
            "aw": Out(_Channel("aw", {"addr": addr_bits, "prot": 3})),
            "w": Out(_Channel("w", {"data": data_bits, "strb": data_bits // 8})),
            "b": In(_Channel("b", {"resp": 2})),
            "ar": Out(_Channel("ar", {"addr": addr_bits, "prot": 3})),
            "r": In(_Channel("r", {"data": data_bits, "resp": 2})),
        })

    def subordinate(self) -> wiring.FlippedSignature:
        """The subordinate's view (this signature flipped)."""
        return self.flip()
