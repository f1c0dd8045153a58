// Native harness of the stream-fed accelerator core (sparsa.hw.accelerator.Accelerator), compiled
// with its Verilated model (class Vtop) by sparsa.sim.native. No Python runs per cycle.
//
// Usage: harness INPUT OUTPUT [VCD]   (VCD: where the waveform goes, in a WAVES=1 build)
//
// INPUT holds one program (magic "spnv-in1", below) or a batch (magic "spnv-in2": u64 count,
// then that many records, each a "spnv-in1" file extended by PACE_FIELDS u64 fields right
// after its header; OUTPUT is then u64 "spnvout2", u64 count and one "spnvout1" result per
// record). The model is reset (RESET_CYCLES) before every record. A batch record may also
// pace its streams by seeded random idle/backpressure (RandomGaps below), with the semantics
// of sparsa.sim.streams.RandomGaps as sparsa.sim.accel_driver uses it, plus long stalls.
//
// It runs one program the way sparsa.sim.accel_driver.AcceleratorDriver does on any other
// backend (sparsa.sim.streams.run_cycles), so cycle counts obey the same contract
// (sparsa.sw.accel_timing). Each cycle:
//   1. drive: the insn and data_in sources offer their next beat when they are not already
//      offering one (data_in: when its DRAM port holds the beat's bytes); data_out's ready is
//      high when its DRAM port holds the next row's bytes (ideal streams: always);
//   2. settle (eval with the clock low);
//   3. sample: a beat moves when valid and ready are both high; every DRAM port ends its cycle
//      (credit = min(cap, credit - bytes moved + rate), sw.dram_port.DramPort);
//      the run is finished when every instruction has moved (the last one in an earlier
//      cycle), every expected row is out and the core is idle;
//   4. a rising edge.
// The counters are read at the settled point of cycle 0 and of the last cycle.
//
// Input file, little-endian: a header of u64 fields (HEADER_FIELDS below), then the per-beat
// byte sizes of data_in and data_out as u32 (only when rate > 0), then the instruction words
// and the data_in rows, each port value as ceil(width / 32) u32 words, least significant first.
// Output file: u64 magic, status (0 done, 1 timeout), last cycle, instructions moved, rows
// received, data_in beats moved, wall nanoseconds of the cycle loop; the cycle each
// instruction moved (u64 each), the cycle each row moved (u64 each), the rows (u32 words), the
// counters at cycle 0 and at the end (u32 words each).
//
// An AXI top would replace the two sources and the sink by a memory model; the loop and the
// file format stay.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "sim.h"

namespace {

constexpr uint64_t MAGIC_IN = 0x316e692d766e7073ULL;   // "spnv-in1"
constexpr uint64_t MAGIC_OUT = 0x3174756f766e7073ULL;  // "spnvout1"
constexpr uint64_t MAGIC_IN2 = 0x326e692d766e7073ULL;  // "spnv-in2"
constexpr uint64_t MAGIC_OUT2 = 0x3274756f766e7073ULL; // "spnvout2"

// Port values as 32-bit words, whatever C++ type Verilator chose for the port's width.
template <typename T>
constexpr size_t words_of() {
    return sizeof(T) <= 4 ? 1 : sizeof(T) / 4;
}
template <typename T>
inline void put(T& port, const uint32_t* w) {
    if constexpr (sizeof(T) <= 4) {
        port = static_cast<T>(w[0]);
    } else if constexpr (sizeof(T) == 8 && std::is_integral<T>::value) {
        port = static_cast<T>(w[0]) | (static_cast<T>(w[1]) << 32);
    } else {
        std::memcpy(port.data(), w, sizeof(T));
    }
}
template <typename T>
inline void get(const T& port, uint32_t* w) {
    if constexpr (sizeof(T) <= 4) {
        w[0] = static_cast<uint32_t>(port);
    } else if constexpr (sizeof(T) == 8 && std::is_integral<T>::value) {
        w[0] = static_cast<uint32_t>(port);
        w[1] = static_cast<uint32_t>(static_cast<uint64_t>(port) >> 32);
    } else {
        std::memcpy(w, port.data(), sizeof(T));
    }
}

using InsnT = decltype(Vtop::insn___05Fpayload);
using DataInT = decltype(Vtop::data_in___05Fpayload);
using DataOutT = decltype(Vtop::data_out___05Fpayload);
using CountersT = decltype(Vtop::counters);
constexpr size_t INSN_W = words_of<InsnT>(), IN_W = words_of<DataInT>(),
                 OUT_W = words_of<DataOutT>(), CTR_W = words_of<CountersT>();

enum Header { MAGIC, INSN_WORDS, IN_WORDS, OUT_WORDS, CTR_WORDS, N_INSN, N_IN, N_OUT, RATE,
              CAP_IN, CAP_OUT, MAX_CYCLES, RESET_CYCLES, HEADER_FIELDS };
// A batch record's pacing: probabilities as fractions of 2^32. IDLE: the insn and data_in
// sources idle before offering their next beat; BACKPRESSURE: data_out's ready low; STALL: a
// stream starts a stall of 1..STALL_MAX cycles (uniform) instead; SEED: the random streams.
enum Pace { IDLE, BACKPRESSURE, STALL, STALL_MAX, SEED, PACE_FIELDS };

// splitmix64: small, fast, and seeded per stream.
struct Rng {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
};

// sparsa.sim.streams.RandomGaps, asked once per cycle in which the stream could move its next
// beat (a source not offering one yet, a sink): holds it back with probability p, and with
// probability stall starts a stall of 1..stall_max such cycles. p = stall = 0: never draws.
struct Gaps {
    uint64_t p = 0, stall = 0, stall_max = 0, left = 0;
    Rng rng{0};
    bool allows() {
        if (left) { --left; return false; }
        if (!p && !stall) return true;
        const uint64_t r = rng.next();
        const uint64_t lo = r & 0xffffffffULL, hi = r >> 32;
        if (stall && hi < stall) {
            left = stall_max > 1 ? rng.next() % stall_max : 0;   // this cycle + left more
            return false;
        }
        return lo >= p;
    }
};
struct Pacing {
    Gaps insn, data_in, data_out;
};

// sw.dram_port.DramPort: a token bucket that starts full. rate 0: an ideal port.
struct Port {
    int64_t rate, cap, credit;
    const uint32_t* sizes;
    uint64_t count;
    bool allows(uint64_t beat) const {
        if (!rate) return true;
        return beat < count && credit >= static_cast<int64_t>(sizes[beat]);
    }
    void end_cycle(bool moved, uint64_t beat) {
        if (!rate) return;
        int64_t c = credit - (moved ? sizes[beat] : 0) + rate;
        credit = c < cap ? c : cap;
    }
};

struct Input {
    std::vector<uint64_t> h, pace;
    std::vector<uint32_t> in_sizes, out_sizes, insn, data;
};

// One program from f: its header (and PACE_FIELDS more when paced), then its body.
bool read_record(FILE* f, const char* path, Input& in, bool paced) {
    in.h.resize(HEADER_FIELDS);
    in.pace.assign(PACE_FIELDS, 0);
    bool ok = std::fread(in.h.data(), 8, HEADER_FIELDS, f) == HEADER_FIELDS;
    if (ok && paced) ok = std::fread(in.pace.data(), 8, PACE_FIELDS, f) == PACE_FIELDS;
    if (ok && in.h[MAGIC] != MAGIC_IN) {
        std::fprintf(stderr, "%s: not a native harness input file\n", path);
        ok = false;
    }
    if (ok && (in.h[INSN_WORDS] != INSN_W || in.h[IN_WORDS] != IN_W ||
               in.h[OUT_WORDS] != OUT_W || in.h[CTR_WORDS] != CTR_W)) {
        std::fprintf(stderr, "%s: port widths (words) %llu/%llu/%llu/%llu, the model has "
                     "%zu/%zu/%zu/%zu\n", path, (unsigned long long)in.h[INSN_WORDS],
                     (unsigned long long)in.h[IN_WORDS], (unsigned long long)in.h[OUT_WORDS],
                     (unsigned long long)in.h[CTR_WORDS], INSN_W, IN_W, OUT_W, CTR_W);
        ok = false;
    }
    auto load = [&](std::vector<uint32_t>& v, uint64_t n) {
        v.resize(n);
        ok = ok && std::fread(v.data(), 4, n, f) == n;
    };
    if (ok && in.h[RATE]) {
        load(in.in_sizes, in.h[N_IN]);
        load(in.out_sizes, in.h[N_OUT]);
    }
    if (ok) load(in.insn, in.h[N_INSN] * INSN_W);
    if (ok) load(in.data, in.h[N_IN] * IN_W);
    if (!ok) std::fprintf(stderr, "%s: truncated or malformed\n", path);
    return ok;
}

Pacing make_pacing(const Input& in) {
    Pacing p;
    Gaps* all[] = {&p.insn, &p.data_in, &p.data_out};
    for (int i = 0; i < 3; ++i) {
        Gaps& g = *all[i];
        g.p = i == 2 ? in.pace[BACKPRESSURE] : in.pace[IDLE];
        g.stall = in.pace[STALL];
        g.stall_max = in.pace[STALL_MAX];
        g.rng.s = in.pace[SEED] * 3 + i;
    }
    return p;
}

struct Result {
    uint64_t status = 0, last = 0, wall_ns = 0, in_sent = 0;
    std::vector<uint64_t> dispatch, out_cycles;
    std::vector<uint32_t> rows, before, after;
};

void run(Sim& sim, const Input& in, Result& r) {
    Vtop* top = sim.top;
    Pacing pace = make_pacing(in);
    const auto& h = in.h;
    const uint64_t n_insn = h[N_INSN], n_in = h[N_IN], n_out = h[N_OUT];
    Port in_port{static_cast<int64_t>(h[RATE]), static_cast<int64_t>(h[CAP_IN]),
                 static_cast<int64_t>(h[CAP_IN]), in.in_sizes.data(), n_in};
    Port out_port{static_cast<int64_t>(h[RATE]), static_cast<int64_t>(h[CAP_OUT]),
                  static_cast<int64_t>(h[CAP_OUT]), in.out_sizes.data(), n_out};
    r.dispatch.reserve(n_insn);
    r.out_cycles.reserve(n_out);
    r.rows.resize(n_out * OUT_W);
    r.before.resize(CTR_W);
    r.after.resize(CTR_W);
    uint64_t insn_sent = 0, in_sent = 0, received = 0;
    bool insn_offering = false, in_offering = false;
    r.status = 1;
    auto start = std::chrono::steady_clock::now();
    for (uint64_t cycle = 0; cycle < h[MAX_CYCLES]; ++cycle) {
        // 1. drive
        if (!insn_offering && insn_sent < n_insn && pace.insn.allows()) {
            put(top->insn___05Fpayload, &in.insn[insn_sent * INSN_W]);
            insn_offering = true;
        }
        top->insn___05Fvalid = insn_offering;
        if (!in_offering && in_sent < n_in && in_port.allows(in_sent) &&
            pace.data_in.allows()) {
            put(top->data_in___05Fpayload, &in.data[in_sent * IN_W]);
            in_offering = true;
        }
        top->data_in___05Fvalid = in_offering;
        const bool ready = out_port.allows(received) && pace.data_out.allows();
        top->data_out___05Fready = ready;
        // 2. settle
        sim.settle();
        // 3. sample
        if (insn_offering && top->insn___05Fready) {
            r.dispatch.push_back(cycle);
            ++insn_sent;
            insn_offering = false;
        }
        bool moved = in_offering && top->data_in___05Fready;
        in_port.end_cycle(moved, in_sent);
        if (moved) { ++in_sent; in_offering = false; }
        moved = ready && top->data_out___05Fvalid;
        if (moved) {
            if (received >= n_out) {   // more rows than STOREd: report, as the drivers do
                r.rows.resize((received + 1) * OUT_W);
            }
            get(top->data_out___05Fpayload, &r.rows[received * OUT_W]);
            r.out_cycles.push_back(cycle);
        }
        out_port.end_cycle(moved, received);
        if (moved) ++received;
        if (cycle == 0) get(top->counters, r.before.data());
        const bool done = insn_sent == n_insn && (!n_insn || r.dispatch.back() < cycle) &&
                          received >= n_out && top->idle;
        if (done) get(top->counters, r.after.data());
        // 4. clock
        sim.tick();
        if (done) { r.status = 0; r.last = cycle; break; }
    }
    r.wall_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now() - start).count();
    if (r.status) r.last = h[MAX_CYCLES];
    r.in_sent = in_sent;
    r.rows.resize(received * OUT_W);
}

bool write_result(FILE* f, const Result& r) {
    const uint64_t head[] = {MAGIC_OUT, r.status, r.last, r.dispatch.size(),
                             r.out_cycles.size(), r.in_sent, r.wall_ns};
    bool ok = std::fwrite(head, 8, 7, f) == 7;
    ok = ok && std::fwrite(r.dispatch.data(), 8, r.dispatch.size(), f) == r.dispatch.size();
    ok = ok && std::fwrite(r.out_cycles.data(), 8, r.out_cycles.size(), f) ==
                   r.out_cycles.size();
    ok = ok && std::fwrite(r.rows.data(), 4, r.rows.size(), f) == r.rows.size();
    ok = ok && std::fwrite(r.before.data(), 4, CTR_W, f) == CTR_W;
    ok = ok && std::fwrite(r.after.data(), 4, CTR_W, f) == CTR_W;
    return ok;
}

// Rst high for RESET_CYCLES rising edges, inputs low, as the other backends reset.
void reset(Sim& sim, uint64_t cycles) {
    Vtop* top = sim.top;
    top->clk = 0;
    top->rst = 1;
    top->insn___05Fvalid = 0;
    top->data_in___05Fvalid = 0;
    top->data_out___05Fready = 0;
    sim.settle();
    for (uint64_t i = 0; i < cycles; ++i) { sim.tick(); sim.settle(); }
    top->rst = 0;
}

// Every record of INPUT, each after a reset, results written as they finish.
int run_file(Sim& sim, const char* in_path, const char* out_path) {
    FILE* f = std::fopen(in_path, "rb");
    if (!f) { std::perror(in_path); return 2; }
    uint64_t magic = 0, count = 1;
    bool ok = std::fread(&magic, 8, 1, f) == 1;
    const bool batch = ok && magic == MAGIC_IN2;
    if (batch) ok = std::fread(&count, 8, 1, f) == 1;
    else std::fseek(f, 0, SEEK_SET);
    FILE* out = ok ? std::fopen(out_path, "wb") : nullptr;
    if (ok && !out) std::perror(out_path);
    ok = ok && out;
    if (ok && batch) {
        const uint64_t head[] = {MAGIC_OUT2, count};
        ok = std::fwrite(head, 8, 2, out) == 2;
    }
    int code = ok ? 0 : 2;
    for (uint64_t i = 0; ok && i < count; ++i) {
        Input in;
        if (!read_record(f, in_path, in, batch)) { code = 2; break; }
        reset(sim, in.h[RESET_CYCLES]);
        Result r;
        run(sim, in, r);
        if (!write_result(out, r)) {
            std::fprintf(stderr, "%s: write failed\n", out_path);
            code = 1;
            break;
        }
    }
    std::fclose(f);
    if (out && std::fclose(out) != 0) code = 1;
    return code;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3 && argc != 4) {
        std::fprintf(stderr, "usage: %s INPUT OUTPUT [VCD]\n", argv[0]);
        return 2;
    }
    Model model(vcd_path(argc, argv));
    return run_file(model.sim, argv[1], argv[2]);
}
