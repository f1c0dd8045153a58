// Native harness of the memory-mapped accelerator (sparsa.hw.top.AxiAccelerator, exported as
// top "axi_accelerator"), compiled with its Verilated model (class Vtop) by
// sparsa.sim.native_axi. The memory lives here, in C++; no Python runs per cycle.
//
// Usage: axi_harness INPUT OUTPUT [VCD]   (VCD: where the waveform goes, in a WAVES=1 build)
//        axi_harness --protocol-selftest  (the protocol checks on made-up bad traffic)
//
// Memory: Mem below, with exactly sparsa.sim.axi_memory.AxiMemory's timing at pause 0: arready
// and awready always high; wready high when a write burst's address is in (taken in an
// earlier cycle); an ar handshake in cycle t makes the burst's first beat valid from t + latency,
// bursts answered in order, one beat per cycle; a write burst's b valid from the cycle after its
// last w beat. Read and write bandwidth are not modelled (AxiMemory has none: only latency).
// Protocol checks (AxiMemory's): valid held with a stable payload until ready (ar, aw, w);
// every burst a full-width INCR burst of at most 256 beats, not crossing 4 KiB, inside the
// memory; wlast on exactly the last beat; no beat with an empty wstrb. Any violation fails the
// run (status 2, the first messages on stderr).
//
// Host: Host below, an AXI4-Lite manager doing one access at a time as
// sparsa.sim.axi_memory.AxiLiteDriver does: writes prog_base, prog_base_hi, prog_len,
// irq_enable = 1 and ctrl = 1; then it watches the irq port (no CSR polling); then reads
// status and every counter register. A response other than OKAY fails the run (status 3).
//
// Each cycle: 1. drive the memory's and the host's inputs; 2. settle (eval, clock low);
// 3. sample the handshakes; 4. a rising edge. The model is first reset (rst high for
// RESET_CYCLES rising edges, inputs low); cycle 0 is the first after the reset.
//
// Input file, little-endian: u64 header fields (Header below), then MEM_BYTES bytes of memory.
// Output file: u64 magic "spaxout1", status (0 done, 1 timeout, 2 protocol error, 3 CSR error),
// cycles simulated, cycle of the ctrl write's response, cycle irq was first seen high, wall
// and CPU nanoseconds of the cycle loop, protocol errors, AXI read beats, AXI write beats, the status
// register; then N_COUNTERS u32 counter registers; then the memory (MEM_BYTES bytes).

#include <chrono>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "sim.h"

// Verilator escapes "__" in port names as "___05F".
#define PORT(bus, ch, sig) bus##___05F##ch##___05F##sig

namespace {

constexpr uint64_t MAGIC_IN = 0x316e692d78617073ULL;   // "spax-in1"
constexpr uint64_t MAGIC_OUT = 0x3174756f78617073ULL;  // "spaxout1"
constexpr uint64_t MAX_BURST_BEATS = 256, PAGE_BYTES = 4096, BURST_INCR = 1;
constexpr size_t MAX_MESSAGES = 20;

enum Header { MAGIC, BUS_BYTES, MEM_BYTES, LATENCY, MAX_CYCLES, RESET_CYCLES, PROG_BASE,
              PROG_LEN, REG_CTRL, REG_STATUS, REG_IRQ_ENABLE, REG_PROG_BASE, REG_PROG_BASE_HI,
              REG_PROG_LEN, REG_COUNTERS, N_COUNTERS, HEADER_FIELDS };
enum Status { DONE, TIMEOUT, PROTOCOL, CSR_ERROR };

// A port of any width as bytes (little-endian host: Verilator's words are least significant
// first, so the bytes of an integer port or of a VlWide's words are the value's bytes).
template <typename T>
inline uint8_t* bytes_of(T& port) {
    if constexpr (std::is_integral<T>::value) return reinterpret_cast<uint8_t*>(&port);
    else return reinterpret_cast<uint8_t*>(port.data());
}
template <typename T>
inline const uint8_t* bytes_of(const T& port) {
    return bytes_of(const_cast<T&>(port));
}

using DataT = std::remove_reference_t<decltype(Vtop::PORT(axi, r, rdata))>;
using StrbT = std::remove_reference_t<decltype(Vtop::PORT(axi, w, wstrb))>;

struct Burst {
    uint64_t addr, beats, due;   // due: the first cycle its (next) beat may be valid
};

struct Errors {
    uint64_t count = 0;
    std::vector<std::string> messages;
    void add(const std::string& m) {
        if (count++ < MAX_MESSAGES) messages.push_back(m);
    }
};

// One manager channel's rule: valid held with a stable payload until ready.
struct Held {
    const char* name;
    bool held = false;
    std::vector<uint8_t> payload;
    void check(bool valid, bool ready, const uint8_t* p, size_t n, uint64_t cycle, Errors& e) {
        if (held) {
            if (!valid) e.add(std::string(name) + ": valid dropped before ready (cycle " +
                              std::to_string(cycle) + ")");
            else if (std::memcmp(p, payload.data(), n) != 0)
                e.add(std::string(name) + ": payload changed before ready (cycle " +
                      std::to_string(cycle) + ")");
        }
        held = valid && !ready;
        if (held) payload.assign(p, p + n);
    }
};

std::string hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%#llx", (unsigned long long)v);
    return buf;
}

// sparsa.sim.axi_memory.AxiMemory at pause 0 (see the top of the file).
struct Mem {
    std::vector<uint8_t> data;
    uint64_t bus, latency;
    std::deque<Burst> reads, writes;
    std::deque<uint64_t> responses;   // the cycle each b is due
    bool r_held = false, b_held = false;
    uint64_t read_beats = 0, write_beats = 0;
    Errors errors;
    Held ar{"ar"}, aw{"aw"}, w{"w"};

    void burst_errors(const char* ch, uint64_t addr, uint64_t beats, uint64_t size,
                      uint64_t kind, uint64_t cycle) {
        const uint64_t end = addr + beats * bus;
        const bool wrong[] = {kind != BURST_INCR, (1ULL << size) != bus,
                              beats < 1 || beats > MAX_BURST_BEATS, addr % bus != 0,
                              addr / PAGE_BYTES != (end - 1) / PAGE_BYTES, end > data.size()};
        if (!(wrong[0] || wrong[1] || wrong[2] || wrong[3] || wrong[4] || wrong[5])) return;
        const std::string at = std::string(ch) + ": burst " + hex(addr) + " + " +
                               std::to_string(beats) + " beats (cycle " +
                               std::to_string(cycle) + ")";
        if (wrong[0]) errors.add(at + ": burst type " + std::to_string(kind) + " is not INCR");
        if (wrong[1]) errors.add(at + ": size " + std::to_string(size) + " is not the bus width");
        if (wrong[2]) errors.add(at + ": more than 256 beats");
        if (wrong[3]) errors.add(at + ": address not bus-aligned");
        if (wrong[4]) errors.add(at + ": crosses 4 KiB");
        if (wrong[5]) errors.add(at + ": ends beyond the memory");
    }

    void drive(Vtop* top, uint64_t cycle) {
        top->PORT(axi, ar, arready) = 1;
        top->PORT(axi, aw, awready) = 1;
        top->PORT(axi, w, wready) = !writes.empty();
        if (!r_held) r_held = !reads.empty() && reads.front().due <= cycle;
        top->PORT(axi, r, rvalid) = r_held;
        if (r_held) {
            const Burst& head = reads.front();
            uint8_t* rdata = bytes_of(top->PORT(axi, r, rdata));
            if (head.addr + bus <= data.size()) std::memcpy(rdata, &data[head.addr], bus);
            else std::memset(rdata, 0, bus);   // already an error (beyond the memory)
            top->PORT(axi, r, rlast) = head.beats == 1;
            top->PORT(axi, r, rresp) = 0;
        }
        if (!b_held) b_held = !responses.empty() && responses.front() <= cycle;
        top->PORT(axi, b, bvalid) = b_held;
        top->PORT(axi, b, bresp) = 0;
    }

    // An address channel ("ar" or "aw") in cycle ``cycle``: p = addr, len, size, burst.
    void address(Held& ch, bool valid, bool ready, const uint64_t p[4], uint64_t cycle) {
        ch.check(valid, ready, reinterpret_cast<const uint8_t*>(p), 4 * sizeof p[0], cycle,
                 errors);
        if (!(valid && ready)) return;
        burst_errors(ch.name, p[0], p[1] + 1, p[2], p[3], cycle);
        if (&ch == &ar) reads.push_back({p[0], p[1] + 1, cycle + latency});
        else writes.push_back({p[0], p[1] + 1, 0});
    }

    // The w channel: ``payload`` is wdata (``bus`` bytes), wstrb (``strb_bytes``), wlast.
    void write(bool valid, bool ready, const uint8_t* payload, size_t strb_bytes,
               uint64_t cycle) {
        const size_t n = bus + strb_bytes + 1;
        if (valid || w.held) w.check(valid, ready, payload, n, cycle, errors);
        if (!(valid && ready)) return;
        uint64_t strb = 0;
        std::memcpy(&strb, payload + bus, strb_bytes < 8 ? strb_bytes : 8);
        const bool last = payload[n - 1];
        if (writes.empty()) {   // wready is low then: a manager ignoring it
            errors.add("w: beat with no write burst (cycle " + std::to_string(cycle) + ")");
            return;
        }
        Burst& head = writes.front();
        if (!strb) errors.add("w: beat with no byte enabled (cycle " + std::to_string(cycle) +
                              ")");
        if (last != (head.beats == 1))
            errors.add("w: wlast " + std::to_string(last) + " with " +
                       std::to_string(head.beats) + " beats left (cycle " +
                       std::to_string(cycle) + ")");
        if (head.addr + bus <= data.size()) {
            for (uint64_t i = 0; i < bus; ++i)
                if (strb >> i & 1) data[head.addr + i] = payload[i];
        }
        head.addr += bus;
        ++write_beats;
        if (--head.beats == 0 || last) {
            writes.pop_front();
            responses.push_back(cycle + 1);
        }
    }

    void sample(Vtop* top, uint64_t cycle) {
        const uint64_t a[4] = {(uint64_t)top->PORT(axi, ar, araddr), top->PORT(axi, ar, arlen),
                               top->PORT(axi, ar, arsize), top->PORT(axi, ar, arburst)};
        address(ar, top->PORT(axi, ar, arvalid), top->PORT(axi, ar, arready), a, cycle);
        const uint64_t b[4] = {(uint64_t)top->PORT(axi, aw, awaddr), top->PORT(axi, aw, awlen),
                               top->PORT(axi, aw, awsize), top->PORT(axi, aw, awburst)};
        address(aw, top->PORT(axi, aw, awvalid), top->PORT(axi, aw, awready), b, cycle);
        if (r_held && top->PORT(axi, r, rready)) {
            Burst& head = reads.front();
            head.addr += bus;
            r_held = false;
            ++read_beats;
            if (--head.beats == 0) reads.pop_front();
        }
        const bool valid = top->PORT(axi, w, wvalid);
        if (valid || w.held) {
            uint8_t p[sizeof(DataT) + sizeof(StrbT) + 1];
            std::memcpy(p, bytes_of(top->PORT(axi, w, wdata)), sizeof(DataT));
            std::memcpy(p + sizeof(DataT), bytes_of(top->PORT(axi, w, wstrb)), sizeof(StrbT));
            p[sizeof p - 1] = top->PORT(axi, w, wlast);
            write(valid, top->PORT(axi, w, wready), p, sizeof(StrbT), cycle);
        }
        if (b_held && top->PORT(axi, b, bready)) {
            responses.pop_front();
            b_held = false;
        }
    }
};

// The protocol checks on made-up traffic (no model involved), one message per line on stdout:
// each scenario below must be flagged (tests/rtl/test_native_axi.py reads the messages).
int protocol_selftest() {
    Mem mem;
    mem.bus = 16;
    mem.latency = 1;
    mem.data.assign(8192, 0);
    mem.errors = Errors{};
    const uint64_t ok[4] = {0x100, 1, 4, 1}, other[4] = {0x200, 1, 4, 1};
    mem.address(mem.ar, true, false, ok, 0);            // ar offered ...
    mem.address(mem.ar, false, true, ok, 1);            // ... and dropped before ready
    mem.address(mem.aw, true, false, ok, 2);            // aw offered ...
    mem.address(mem.aw, true, false, other, 3);         // ... its address changed
    mem.address(mem.aw, false, false, other, 4);
    const uint64_t page[4] = {0xff0, 1, 4, 1};          // 2 beats from 0xff0: crosses 4 KiB
    mem.address(mem.ar, true, true, page, 5);
    mem.burst_errors("ar", 0x0, 257, 4, 1, 6);          // 257 beats (AxLEN has 8 bits)
    const uint64_t wide[4] = {0x300, 0, 3, 1}, fixed[4] = {0x400, 0, 4, 0},
                   beyond[4] = {0x1ff0, 1, 4, 1}, odd[4] = {0x308, 0, 4, 1};
    for (const uint64_t* p : {wide, fixed, beyond, odd}) mem.address(mem.ar, true, true, p, 7);
    mem.address(mem.aw, true, true, ok, 8);             // a 2-beat write burst
    uint8_t beat[16 + 2 + 1] = {};
    beat[16] = 0xff;
    beat[18] = 1;                                       // wlast on its first beat
    mem.write(true, true, beat, 2, 9);
    mem.address(mem.aw, true, true, ok, 10);
    beat[16] = 0;
    beat[18] = 0;                                       // no byte enabled
    mem.write(true, true, beat, 2, 11);
    for (const std::string& m : mem.errors.messages) std::printf("%s\n", m.c_str());
    std::printf("%llu errors\n", (unsigned long long)mem.errors.count);
    return 0;
}

// An AXI4-Lite manager doing a list of accesses one at a time (AxiLiteDriver's handshakes).
struct Access {
    bool write;
    uint64_t addr;
    uint32_t value;
};
struct Host {
    std::vector<Access> ops;
    size_t next = 0;
    int phase = 0;            // write: 0 aw/w, 1 b; read: 0 ar, 1 r
    bool aw_done = false, w_done = false, failed = false;
    std::vector<uint32_t> read_values;
    uint64_t last_b_cycle = 0;

    bool busy() const { return next < ops.size(); }

    void drive(Vtop* top) {
        const bool on = busy();
        const Access a = on ? ops[next] : Access{false, 0, 0};
        top->PORT(csr, aw, awaddr) = a.addr;
        top->PORT(csr, aw, awvalid) = on && a.write && phase == 0 && !aw_done;
        top->PORT(csr, w, wdata) = a.value;
        top->PORT(csr, w, wstrb) = 0xF;
        top->PORT(csr, w, wvalid) = on && a.write && phase == 0 && !w_done;
        top->PORT(csr, b, bready) = on && a.write && phase == 1;
        top->PORT(csr, ar, araddr) = a.addr;
        top->PORT(csr, ar, arvalid) = on && !a.write && phase == 0;
        top->PORT(csr, r, rready) = on && !a.write && phase == 1;
    }

    void sample(Vtop* top, uint64_t cycle) {
        if (!busy()) return;
        const Access& a = ops[next];
        if (a.write && phase == 0) {
            aw_done |= top->PORT(csr, aw, awvalid) && top->PORT(csr, aw, awready);
            w_done |= top->PORT(csr, w, wvalid) && top->PORT(csr, w, wready);
            if (aw_done && w_done) phase = 1;
        } else if (a.write && top->PORT(csr, b, bvalid)) {
            finish(top->PORT(csr, b, bresp), a, cycle);
            last_b_cycle = cycle;
        } else if (!a.write && phase == 0 && top->PORT(csr, ar, arready)) {
            phase = 1;
        } else if (!a.write && phase == 1 && top->PORT(csr, r, rvalid)) {
            read_values.push_back(top->PORT(csr, r, rdata));
            finish(top->PORT(csr, r, rresp), a, cycle);
        }
    }

    void finish(uint32_t resp, const Access& a, uint64_t cycle) {
        if (resp) {
            std::fprintf(stderr, "CSR %s of %#llx answered %u (cycle %llu)\n",
                         a.write ? "write" : "read", (unsigned long long)a.addr, resp,
                         (unsigned long long)cycle);
            failed = true;
        }
        ++next;
        phase = 0;
        aw_done = w_done = false;
    }
};

struct Result {
    uint64_t status = TIMEOUT, cycles = 0, start_cycle = 0, irq_cycle = 0, wall_ns = 0,
             cpu_ns = 0;
};

// This thread's CPU time: the loop's cost on a loaded machine, where wall time includes waits.
uint64_t thread_cpu_ns() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return uint64_t(t.tv_sec) * 1000000000ULL + t.tv_nsec;
}

void reset(Sim& sim, uint64_t cycles) {
    Vtop* top = sim.top;
    top->clk = 0;
    top->rst = 1;
    sim.settle();
    for (uint64_t i = 0; i < cycles; ++i) { sim.tick(); sim.settle(); }
    top->rst = 0;
}

// Start the program, wait for irq, read status and the counters.
void run(Sim& sim, const std::vector<uint64_t>& h, Mem& mem, Host& host, Result& r) {
    Vtop* top = sim.top;
    const uint64_t base = h[PROG_BASE];
    host.ops = {{true, h[REG_PROG_BASE], (uint32_t)base},
                {true, h[REG_PROG_BASE_HI], (uint32_t)(base >> 32)},
                {true, h[REG_PROG_LEN], (uint32_t)h[PROG_LEN]},
                {true, h[REG_IRQ_ENABLE], 1},
                {true, h[REG_CTRL], 1}};
    bool started = false, irq = false;
    auto start = std::chrono::steady_clock::now();
    const uint64_t cpu_start = thread_cpu_ns();
    uint64_t cycle = 0;
    for (; cycle < h[MAX_CYCLES]; ++cycle) {
        mem.drive(top, cycle);
        host.drive(top);
        sim.settle();
        mem.sample(top, cycle);
        host.sample(top, cycle);
        if (!started && !host.busy()) {   // the ctrl write is answered: wait for irq
            started = true;
            r.start_cycle = host.last_b_cycle;
        } else if (started && !irq && top->irq) {
            irq = true;
            r.irq_cycle = cycle;
            host.ops.push_back({false, h[REG_STATUS], 0});
            for (uint64_t i = 0; i < h[N_COUNTERS]; ++i)
                host.ops.push_back({false, h[REG_COUNTERS] + 4 * i, 0});
        }
        sim.tick();
        if (mem.errors.count || host.failed || (irq && !host.busy())) { ++cycle; break; }
    }
    r.wall_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now() - start).count();
    r.cpu_ns = thread_cpu_ns() - cpu_start;
    r.cycles = cycle;
    if (mem.errors.count) r.status = PROTOCOL;
    else if (host.failed) r.status = CSR_ERROR;
    else if (irq && !host.busy()) r.status = DONE;
}

bool read_input(const char* path, std::vector<uint64_t>& h, Mem& mem) {
    FILE* f = std::fopen(path, "rb");
    if (!f) { std::perror(path); return false; }
    h.resize(HEADER_FIELDS);
    bool ok = std::fread(h.data(), 8, HEADER_FIELDS, f) == HEADER_FIELDS;
    if (ok && h[MAGIC] != MAGIC_IN) {
        std::fprintf(stderr, "%s: not an AXI harness input file\n", path);
        ok = false;
    } else if (ok && h[BUS_BYTES] != sizeof(DataT)) {
        std::fprintf(stderr, "%s: a %llu-byte bus, the model's is %zu bytes\n", path,
                     (unsigned long long)h[BUS_BYTES], sizeof(DataT));
        ok = false;
    }
    if (ok) {
        mem.bus = h[BUS_BYTES];
        mem.latency = h[LATENCY];
        mem.data.resize(h[MEM_BYTES]);
        ok = std::fread(mem.data.data(), 1, h[MEM_BYTES], f) == h[MEM_BYTES];
        if (!ok) std::fprintf(stderr, "%s: truncated\n", path);
    }
    std::fclose(f);
    return ok;
}

bool write_output(const char* path, const std::vector<uint64_t>& h, const Mem& mem,
                  const Host& host, const Result& r) {
    FILE* f = std::fopen(path, "wb");
    if (!f) { std::perror(path); return false; }
    const bool done = r.status == DONE;
    const uint64_t head[] = {MAGIC_OUT, r.status, r.cycles, r.start_cycle, r.irq_cycle,
                             r.wall_ns, r.cpu_ns, mem.errors.count, mem.read_beats,
                             mem.write_beats, done ? host.read_values[0] : 0};
    bool ok = std::fwrite(head, 8, std::size(head), f) == std::size(head);
    std::vector<uint32_t> counters(h[N_COUNTERS], 0);
    for (size_t i = 0; done && i < counters.size(); ++i) counters[i] = host.read_values[1 + i];
    ok = ok && std::fwrite(counters.data(), 4, counters.size(), f) == counters.size();
    ok = ok && std::fwrite(mem.data.data(), 1, mem.data.size(), f) == mem.data.size();
    return std::fclose(f) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 2 && std::string(argv[1]) == "--protocol-selftest") return protocol_selftest();
    if (argc != 3 && argc != 4) {
        std::fprintf(stderr, "usage: %s INPUT OUTPUT [VCD] | --protocol-selftest\n", argv[0]);
        return 2;
    }
    std::vector<uint64_t> h;
    Mem mem;
    if (!read_input(argv[1], h, mem)) return 2;
    Model model(vcd_path(argc, argv));
    Sim& sim = model.sim;
    reset(sim, h[RESET_CYCLES]);
    Host host;
    Result r;
    run(sim, h, mem, host, r);
    for (const std::string& m : mem.errors.messages) std::fprintf(stderr, "AXI: %s\n", m.c_str());
    if (mem.errors.count > mem.errors.messages.size())
        std::fprintf(stderr, "AXI: ... %llu protocol errors in all\n",
                     (unsigned long long)mem.errors.count);
    return write_output(argv[2], h, mem, host, r) ? 0 : 1;
}
