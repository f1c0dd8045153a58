// The Verilated model and its clock, shared by the native harnesses (harness.cpp: the
// stream-fed core; axi_harness.cpp: the memory-mapped top). WAVES=1 adds VCD tracing.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

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

// The model with its context and, with WAVES=1, its VCD trace written to `vcd`; `sim` clocks it.
// The destructor finishes the model and closes the trace.
struct Model {
    std::unique_ptr<VerilatedContext> ctx{new VerilatedContext};
    std::unique_ptr<Vtop> top;
#if WAVES
    std::unique_ptr<VerilatedVcdC> trace{new VerilatedVcdC};
#endif
    Sim sim{};

    explicit Model(const std::string& vcd) {
#if WAVES
        ctx->traceEverOn(true);
#endif
        top.reset(new Vtop(ctx.get()));
        sim.top = top.get();
#if WAVES
        top->trace(trace.get(), 99);
        trace->open(vcd.c_str());
        sim.trace = trace.get();
#else
        (void)vcd;
#endif
    }
    ~Model() {
        top->final();
#if WAVES
        trace->close();
#endif
    }
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;
};

// The VCD path of a harness run with arguments INPUT OUTPUT [VCD].
inline std::string vcd_path(int argc, char** argv) {
    return argc == 4 ? argv[3] : std::string(argv[2]) + ".vcd";
}
