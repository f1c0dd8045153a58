"""Simulation and verification: executors, drivers, backends and testbenches.

Executors (what the hardware must compute)
    ``golden_accel`` (accelerator programs, golden), ``host`` (one program API over golden and
    RTL backends), ``infer`` (whole networks on a host backend), ``hls4ml_check``.
Stimulus
    ``stimulus`` (array tiles with golden expectations), ``programs`` (random accelerator
    programs), ``encode`` (tiles to stream beats).
Drivers, one per protocol, shared by every backend
    ``streams`` (valid/ready source and sink, the per-cycle loop, the harness protocol),
    ``array_driver`` (tiles through the array), ``accel_driver`` (programs through the
    accelerator, counters).
Backends (thin harness adapters) and their entry points
    ``amaranth_sim`` (Amaranth simulator; ``run_tiles``), ``accel_sim`` (``run_program``),
    ``pyverilator_driver`` (pyverilator; ``PyVerilatorArray``, ``PyVerilatorAccelerator``),
    ``cocotb_util`` (cocotb on Verilator or Icarus), ``pyverilator_compat``, ``tools``.
Testbenches (cocotb) and their runner
    ``tb_pe``, ``tb_array``, ``tb_accel``, ``tb_run`` (a network via ``sparsa run``),
    ``runner`` (builds and runs them from pytest or the command line).
"""
