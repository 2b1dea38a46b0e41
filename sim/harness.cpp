// Native Verilator harness for `systolab_top` (the simulation top, docs/architecture.md).
//
// Built by sim/native.py with `verilator --cc --exe --build` together with the generated Verilog
// and `systolab_counters.h` (the counter names from hw/counters.py). One run:
//
//   1. reset for two cycles;
//   2. write the memory image through the host port (all-zero words are skipped: the memory
//      model starts zeroed);
//   3. set insn_addr / insn_count and pulse start for one cycle;
//   4. clock until `done` (or the cycle watchdog), then read every cnt_<name>;
//   5. read the requested byte range back through the host port.
//
// The cocotb testbench (sim/cocotb_tb.py) follows the same sequence, so both report the same
// memory and counters.
//
// usage: Vsim --image FILE --insn-addr N --insn-count N --max-cycles N --read START END
//             --memory-out FILE --result FILE [--trace FILE] [--clock-only CYCLES]
//
// --trace FILE: record a waveform (FST or VCD, whichever the build has compiled in).
//
// --clock-only CYCLES: after start, toggle the clock CYCLES times without looking at any port
// (no done check, no readback): the speed limit of this model, for benchmarks/sim_speed.py.
//
// Exit status: 0 done, 3 watchdog expired (result JSON says "timeout"), 2 usage or file error.

#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "Vtop.h"
#include "verilated.h"
#include "systolab_counters.h"  // SYSTOLAB_COUNTERS(X): X(cycles) X(array_busy) ...

#if VM_TRACE_FST
#include "verilated_fst_c.h"
using Trace = VerilatedFstC;
#elif VM_TRACE
#include "verilated_vcd_c.h"
using Trace = VerilatedVcdC;
#endif

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the host port is copied byte for byte: little-endian hosts only");

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string& msg) {
    std::fprintf(stderr, "harness: %s\n", msg.c_str());
    std::exit(2);
}

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The model, its context and the optional waveform writer. Locals of main(), so they are torn
// down (trace first) before Verilator's own statics at exit.
struct Sim {
    std::unique_ptr<VerilatedContext> ctx{new VerilatedContext};
    std::unique_ptr<Vtop> top;
#if VM_TRACE
    std::unique_ptr<Trace> tfp;
#endif

    // One clock cycle: falling then rising edge. Inputs set before the call are sampled at the
    // rising edge; registered outputs (host_rdata, done, counters) are valid after it.
    inline void tick() {
        top->clk = 0;
        top->eval();
        dump();
        top->clk = 1;
        top->eval();
        dump();
    }

    inline void dump() {
#if VM_TRACE
        if (tfp) tfp->dump(ctx->time());
        ctx->timeInc(5);
#endif
    }

    ~Sim() {
#if VM_TRACE
        if (tfp) tfp->close();
        tfp.reset();
#endif
        if (top) top->final();
        top.reset();
    }
};

// Ports of any width (CData ... VlWide<N>) are plain little-endian storage on this host.
template <class Port>
void port_from_bytes(Port& port, const uint8_t* src, size_t n) {
    static_assert(std::is_trivially_copyable<Port>::value, "port must be plain data");
    std::memcpy(&port, src, n);
}

template <class Port>
void port_to_bytes(const Port& port, uint8_t* dst, size_t n) {
    std::memcpy(dst, &port, n);
}

std::vector<uint8_t> read_file(const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail("cannot open " + path);
    std::vector<uint8_t> data;
    uint8_t buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + n);
    std::fclose(f);
    return data;
}

void write_file(const std::string& path, const uint8_t* data, size_t n) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(data, 1, n, f) != n) fail("cannot write " + path);
    std::fclose(f);
}

uint64_t parse_u64(const char* flag, const char* text) {
    char* end = nullptr;
    unsigned long long v = std::strtoull(text, &end, 0);
    if (!*text || *end) fail(std::string(flag) + " must be an integer, not '" + text + "'");
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    std::string image_path, memory_out, result_path, trace_path;
    uint64_t insn_addr = 0, insn_count = 0, max_cycles = 0, read_start = 0, read_end = 0;
    uint64_t clock_only = 0;
    bool have_addr = false, have_count = false, have_max = false, have_read = false;

    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&](int k = 1) -> const char* {
            if (i + k >= argc) fail(a + " needs a value");
            return argv[i + k];
        };
        if (a == "--image") { image_path = value(); ++i; }
        else if (a == "--insn-addr") { insn_addr = parse_u64(argv[i], value()); have_addr = true; ++i; }
        else if (a == "--insn-count") { insn_count = parse_u64(argv[i], value()); have_count = true; ++i; }
        else if (a == "--max-cycles") { max_cycles = parse_u64(argv[i], value()); have_max = true; ++i; }
        else if (a == "--read") {
            read_start = parse_u64(argv[i], value(1));
            read_end = parse_u64(argv[i], value(2));
            have_read = true;
            i += 2;
        }
        else if (a == "--memory-out") { memory_out = value(); ++i; }
        else if (a == "--result") { result_path = value(); ++i; }
        else if (a == "--trace") { trace_path = value(); ++i; }
        else if (a == "--clock-only") { clock_only = parse_u64(argv[i], value()); ++i; }
        else if (a.rfind("+verilator+", 0) == 0) { /* Verilator runtime option */ }
        else fail("unknown argument '" + a + "'");
    }
    if (image_path.empty() || !have_addr || !have_count || result_path.empty())
        fail("--image, --insn-addr, --insn-count and --result are required");
    if (!clock_only && (!have_max || !have_read || memory_out.empty()))
        fail("--max-cycles, --read and --memory-out are required unless --clock-only is given");

    Sim sim;
    sim.ctx->commandArgs(argc, argv);
    if (!trace_path.empty()) sim.ctx->traceEverOn(true);
    sim.top.reset(new Vtop{sim.ctx.get()});
    Vtop* top = sim.top.get();

    const size_t bus_bytes = sizeof(top->host_wdata);
    if (have_read && (read_start % bus_bytes || read_end % bus_bytes || read_end < read_start))
        fail("--read range must be whole " + std::to_string(bus_bytes) + "-byte words");

    if (!trace_path.empty()) {
#if VM_TRACE
        sim.tfp.reset(new Trace);
        top->trace(sim.tfp.get(), 99);
        sim.tfp->open(trace_path.c_str());
#else
        fail("--trace needs a build with tracing (run_rtl(..., trace=...) makes one)");
#endif
    }

    // 1. reset
    top->clk = 0;
    top->rst = 1;
    top->start = 0;
    top->host_we = 0;
    sim.tick();
    sim.tick();
    top->rst = 0;

    // 2. load the image through the host port
    auto t_load = Clock::now();
    std::vector<uint8_t> image = read_file(image_path);
    if (image.size() % bus_bytes) fail(image_path + " is not a whole number of bus words");
    for (size_t w = 0; w < image.size() / bus_bytes; ++w) {
        const uint8_t* word = &image[w * bus_bytes];
        bool zero = true;
        for (size_t b = 0; b < bus_bytes && zero; ++b) zero = word[b] == 0;
        if (zero) continue;
        top->host_addr = w;
        port_from_bytes(top->host_wdata, word, bus_bytes);
        top->host_we = 1;
        sim.tick();
    }
    top->host_we = 0;
    double load_s = seconds_since(t_load);

    // 3. start
    top->insn_addr = insn_addr;
    top->insn_count = insn_count;
    top->start = 1;
    sim.tick();
    top->start = 0;

    // 4. run
    auto t_run = Clock::now();
    uint64_t ticks = 0;
    bool done;
    if (clock_only) {
        for (; ticks < clock_only; ++ticks) sim.tick();
        done = top->done;
    } else {
        while (!(done = top->done) && ticks < max_cycles) {
            sim.tick();
            ++ticks;
        }
    }
    double sim_s = seconds_since(t_run);

    FILE* out = std::fopen(result_path.c_str(), "w");
    if (!out) fail("cannot write " + result_path);
    std::fprintf(out, "{\"status\": \"%s\", \"bus_bytes\": %zu, \"ticks\": %" PRIu64
                 ", \"load_s\": %.6f, \"sim_s\": %.6f, \"counters\": {",
                 clock_only ? "clock_only" : (done ? "done" : "timeout"), bus_bytes, ticks,
                 load_s, sim_s);
    const char* sep = "";
#define SYSTOLAB_EMIT_COUNTER(name)                                                        \
    std::fprintf(out, "%s\"" #name "\": %" PRIu64, sep, static_cast<uint64_t>(top->cnt_##name)); \
    sep = ", ";
    SYSTOLAB_COUNTERS(SYSTOLAB_EMIT_COUNTER)
#undef SYSTOLAB_EMIT_COUNTER
    std::fprintf(out, "}");

    // 5. read back (only after a completed run: a timed-out run's memory is meaningless)
    if (!clock_only && done) {
        auto t_read = Clock::now();
        std::vector<uint8_t> mem(read_end - read_start);
        for (uint64_t a = read_start; a < read_end; a += bus_bytes) {
            top->host_addr = a / bus_bytes;
            sim.tick();
            port_to_bytes(top->host_rdata, &mem[a - read_start], bus_bytes);
        }
        write_file(memory_out, mem.data(), mem.size());
        std::fprintf(out, ", \"read_s\": %.6f", seconds_since(t_read));
    }
    std::fprintf(out, "}\n");
    std::fclose(out);

    return (clock_only || done) ? 0 : 3;
}
