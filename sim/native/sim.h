// The Verilated model and its clock, shared by the native harnesses (harness.cpp: the
// stream-fed core; axi_harness.cpp: the memory-mapped top). WAVES=1 adds VCD tracing.
#pragma once

#include <cstdint>

#include "Vtop.h"
#include "verilated.h"

#if WAVES
#include "verilated_vcd_c.h"
#endif

// One rising edge (then the clock low again, for the next cycle's inputs).
struct Sim {
    Vtop* top;
#if WAVES
    VerilatedVcdC* trace = nullptr;
    uint64_t time = 0;
#endif
    void settle() {
        top->eval();
#if WAVES
        if (trace) trace->dump(time++);
#endif
    }
    void tick() {
        top->clk = 1;
        settle();
        top->clk = 0;
    }
};
