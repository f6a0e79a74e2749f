// Generic driver for a Verilated cnn2fpga accelerator (see sim/verilator.py).
//
// Build: verilator ... -CFLAGS -DC2F_TOP=V<top> [-CFLAGS -DC2F_TRACE --trace] harness.cpp
// Usage: <exe> JOB_FILE RESULT_FILE [--vcd FILE] [--first N] [--flash FILE]  (N: index of
// the first input in the whole batch, for messages)
//
// Built with -DC2F_FLASH (a design whose weights stream: ports flash_sck, flash_cs,
// flash_dq_o, flash_dq_oe, flash_dq_i, flash_wait, flash_ok) the harness runs the board's flash
// (flash_model.h) with FILE at address 0, stops on a bus fight or when flash_ok is low at
// the final done (the streamed bytes failed their CRC), and reports flash_wait at the final
// done in each input's record.
//
// Ports of the top (names as emitted by amaranth.back.verilog): clk, rst, start, step,
// busy, done, layer, last, cycles, host_addr, host_wdata, host_we, host_rdata,
// wload_addr, wload_data, wload_we.  Any port width up to 64 bits works (values are
// carried as uint64 and narrowed by the assignment); wload_data may be wider (a VlWide,
// filled 32 bits at a time from the word's bytes).
//
// Job file (little-endian):
//   header  char magic[4] = "C2FJ"; u32 version = 1; u32 flags (bit 0: stepping);
//           u32 n_weights; u32 n_inputs; u32 n_out; u32 n_step; u32 weight_bytes (1..256);
//           u64 max_cycles (per start..done; 0 = no limit)
//   weights u32 addr[n_weights]; then n_weights words of weight_bytes bytes each
//   u32 out_addr[n_out]; u32 step_addr[n_step]
//   n_inputs times: u32 k; u32 addr[k]; u8 data[k]
// Result file:
//   header  char magic[4] = "C2FR"; u32 version = 1; u32 n_inputs; u32 n_out; u32 n_step;
//           u32 reserved; u64 total_ticks; u64 load_ticks
//   n_inputs times:
//           u64 cycles (the `cycles` port at the final done); u64 ticks (clock ticks from
//           the first start pulse to the final done, host traffic between steps excluded);
//           u32 layer; u32 last (ports at the final done); u32 n_steps; u32 flash_wait (0
//           without a flash);
//           u8 out[n_out];
//           n_steps times: u32 layer; u32 last; u64 cycles; u8 mem[n_step]
// Progress lines on stdout: "@progress <done> <total>"; errors on stderr, exit code != 0.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "verilated.h"
#ifdef C2F_TRACE
#include "verilated_vcd_c.h"
#endif

#ifndef C2F_TOP
#error "define C2F_TOP to the Verilated class name, e.g. -DC2F_TOP=Vtop"
#endif
#define C2F_STR_(x) #x
#define C2F_STR(x) C2F_STR_(x)
#include C2F_STR(C2F_TOP.h)
#ifdef C2F_FLASH
#include "flash_model.h"
#endif

using Top = C2F_TOP;

static uint64_t first_index = 0;  // index of this job's first input in the whole batch (messages)

[[noreturn]] static void fail(const std::string& msg, int code = 2) {
    std::fprintf(stderr, "harness: %s\n", msg.c_str());
    std::fflush(stderr);
    std::exit(code);
}

struct Reader {
    FILE* f;
    explicit Reader(const char* path) : f(std::fopen(path, "rb")) {
        if (!f) fail(std::string("cannot open job file ") + path);
    }
    ~Reader() { if (f) std::fclose(f); }
    void bytes(void* p, size_t n) {
        if (n && std::fread(p, 1, n, f) != n) fail("job file truncated");
    }
    uint32_t u32() { uint8_t b[4]; bytes(b, 4); return b[0] | b[1] << 8 | b[2] << 16 | uint32_t(b[3]) << 24; }
    uint64_t u64() { uint64_t lo = u32(); return lo | uint64_t(u32()) << 32; }
    uint64_t word(unsigned nbytes) {
        uint8_t b[8] = {0}; bytes(b, nbytes);
        uint64_t v = 0;
        for (unsigned i = 0; i < nbytes; i++) v |= uint64_t(b[i]) << (8 * i);
        return v;
    }
    std::vector<uint32_t> u32s(size_t n) {
        std::vector<uint32_t> v(n);
        for (auto& x : v) x = u32();
        return v;
    }
};

struct Writer {
    std::vector<uint8_t> buf;
    void bytes(const void* p, size_t n) { auto c = static_cast<const uint8_t*>(p); buf.insert(buf.end(), c, c + n); }
    void u32(uint32_t v) { for (int i = 0; i < 4; i++) buf.push_back(uint8_t(v >> (8 * i))); }
    void u64(uint64_t v) { for (int i = 0; i < 8; i++) buf.push_back(uint8_t(v >> (8 * i))); }
    void save(const char* path) {
        FILE* f = std::fopen(path, "wb");
        if (!f) fail(std::string("cannot write result file ") + path);
        if (std::fwrite(buf.data(), 1, buf.size(), f) != buf.size()) fail("short write on result file");
        std::fclose(f);
    }
};

struct Sim {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Top> top;
    uint64_t ticks = 0;
#ifdef C2F_TRACE
    std::unique_ptr<VerilatedVcdC> vcd;
#endif
#ifdef C2F_FLASH
    QuadFlash flash;
#endif

    Sim() : ctx(new VerilatedContext) {
#ifdef C2F_TRACE
        ctx->traceEverOn(true);
#endif
        top.reset(new Top{ctx.get()});
        top->clk = 0; top->rst = 0;
        top->start = 0; top->step = 0;
        top->host_addr = 0; top->host_wdata = 0; top->host_we = 0;
        const uint8_t zero = 0;
        top->wload_addr = 0; set_port(top->wload_data, &zero, 1); top->wload_we = 0;
#ifdef C2F_FLASH
        top->flash_dq_i = 0xF;
#endif
        top->eval();
    }
    ~Sim() {
        close_trace();
        if (top) top->final();
    }

    void open_trace(const char* path) {
#ifdef C2F_TRACE
        vcd.reset(new VerilatedVcdC);
        top->trace(vcd.get(), 99);
        vcd->open(path);
        if (!vcd->isOpen()) fail(std::string("cannot open VCD file ") + path);
        vcd->dump(0);
#else
        (void)path;
        fail("this simulator was built without tracing: build(..., trace=True) for --vcd");
#endif
    }
    void close_trace() {
#ifdef C2F_TRACE
        if (vcd) { vcd->close(); vcd.reset(); }
#endif
    }

    // One clock cycle: inputs set before the call are sampled at the rising edge; outputs
    // read after the call show the registered state after it (and combinational paths of
    // the current inputs).  In the VCD the edge is at 10*t, inputs change at 10*t - 5.
    inline void tick() {
        top->clk = 0;
        top->eval();
#ifdef C2F_TRACE
        if (vcd) vcd->dump(10 * ticks + 5);
#endif
        ticks++;
        top->clk = 1;
        top->eval();
#ifdef C2F_TRACE
        if (vcd) vcd->dump(10 * ticks);
#endif
#ifdef C2F_FLASH
        flash.step(top->flash_sck, top->flash_cs, top->flash_dq_o);
        top->flash_dq_i = flash.dq_i(top->flash_dq_o, top->flash_dq_oe);
        if (flash.contention) fail("the design and the flash drive the same I/O line at once", 3);
#endif
    }

    void reset() {
        top->rst = 1;
        tick(); tick();
        top->rst = 0;
        tick();
    }

    // A port of up to 64 bits from ``n`` little-endian bytes.
    template <typename T> static void set_port(T& port, const uint8_t* bytes, size_t n) {
        uint64_t v = 0;
        std::memcpy(&v, bytes, n < 8 ? n : 8);
        port = v;
    }
    // A wide port (VlWide): 32-bit words, lowest first.
    template <std::size_t W> static void set_port(VlWide<W>& port, const uint8_t* bytes, size_t n) {
        for (std::size_t i = 0; i < W; i++) {
            uint32_t v = 0;
            if (4 * i < n) std::memcpy(&v, bytes + 4 * i, n - 4 * i < 4 ? n - 4 * i : 4);
            port[i] = v;
        }
    }

    void load_weights(const std::vector<uint32_t>& addr, const std::vector<uint8_t>& data, size_t bytes) {
        const std::vector<uint8_t> zero(bytes, 0);
        for (size_t i = 0; i < addr.size(); i++) {
            top->wload_addr = addr[i];
            set_port(top->wload_data, data.data() + i * bytes, bytes);
            top->wload_we = 1;
            tick();
        }
        top->wload_we = 0;
        top->wload_addr = 0;
        set_port(top->wload_data, zero.data(), bytes);
        tick();
    }

    void host_write(const std::vector<uint32_t>& addr, const std::vector<uint8_t>& data) {
        for (size_t i = 0; i < addr.size(); i++) {
            top->host_addr = addr[i];
            top->host_wdata = data[i];
            top->host_we = 1;
            tick();
        }
        top->host_we = 0;
        top->host_wdata = 0;
    }

    // Synchronous read: one address per cycle, each byte valid the cycle after its address.
    void host_read(const std::vector<uint32_t>& addr, uint8_t* out) {
        for (size_t i = 0; i < addr.size(); i++) {
            top->host_addr = addr[i];
            tick();
            out[i] = uint8_t(top->host_rdata);
        }
    }

    [[noreturn]] void timeout(uint64_t n, size_t input_index, const char* what) {
        fail("timeout: input " + std::to_string(first_index + input_index) + " ran " + std::to_string(n) +
             " cycles " + what + " (layer " + std::to_string(unsigned(top->layer)) +
             ", busy " + std::to_string(unsigned(top->busy)) + ")", 3);
    }

    // Pulse start and clock until done; returns the ticks spent.
    uint64_t run_once(bool step, uint64_t max_cycles, size_t input_index) {
        top->step = step;
        top->start = 1;
        tick();
        top->start = 0;
        top->step = 0;
        uint64_t n = 1;
        // clock until done, then (should busy outlast done) until not busy: the host
        // ports are only used while not busy
        while (!top->done) {
            tick();
            n++;
            if (max_cycles && n > max_cycles) timeout(n, input_index, "without done");
        }
        while (top->busy) {
            tick();
            n++;
            if (max_cycles && n > max_cycles) timeout(n, input_index, "busy after done");
        }
        return n;
    }
};

int main(int argc, char** argv) {
    const char* job_path = nullptr;
    const char* res_path = nullptr;
    const char* vcd_path = nullptr;
    const char* flash_path = nullptr;
    for (int i = 1; i < argc; i++) {
        if (!std::strcmp(argv[i], "--vcd") && i + 1 < argc) vcd_path = argv[++i];
        else if (!std::strcmp(argv[i], "--flash") && i + 1 < argc) flash_path = argv[++i];
        else if (!std::strcmp(argv[i], "--first") && i + 1 < argc) first_index = std::strtoull(argv[++i], nullptr, 10);
        else if (!job_path) job_path = argv[i];
        else if (!res_path) res_path = argv[i];
        else fail(std::string("unexpected argument ") + argv[i]);
    }
    if (!job_path || !res_path) fail("usage: harness JOB_FILE RESULT_FILE [--vcd FILE] [--first N]");

    Reader in(job_path);
    char magic[4];
    in.bytes(magic, 4);
    if (std::memcmp(magic, "C2FJ", 4)) fail("not a job file (bad magic)");
    if (in.u32() != 1) fail("unsupported job file version");
    const uint32_t flags = in.u32();
    const uint32_t n_weights = in.u32();
    const uint32_t n_inputs = in.u32();
    const uint32_t n_out = in.u32();
    const uint32_t n_step = in.u32();
    const uint32_t weight_bytes = in.u32();
    const uint64_t max_cycles = in.u64();
    const bool stepping = flags & 1;
    if (weight_bytes < 1 || weight_bytes > 256) fail("weight_bytes must be 1..256");

    std::vector<uint32_t> w_addr = in.u32s(n_weights);
    std::vector<uint8_t> w_data(size_t(n_weights) * weight_bytes);
    for (auto& b : w_data) b = uint8_t(in.word(1));
    std::vector<uint32_t> out_addr = in.u32s(n_out);
    std::vector<uint32_t> step_addr = in.u32s(n_step);

    Sim sim;
#ifdef C2F_FLASH
    if (!flash_path) fail("this design streams weights from flash: give --flash FILE");
    {
        Reader image(flash_path);
        int c;
        while ((c = std::fgetc(image.f)) != EOF) sim.flash.image.push_back(uint8_t(c));
    }
#else
    if (flash_path) fail("--flash given, but this design has no flash pins");
#endif
    if (vcd_path) sim.open_trace(vcd_path);
    sim.reset();
    sim.load_weights(w_addr, w_data, weight_bytes);
    const uint64_t load_ticks = sim.ticks;

    Writer res;
    res.bytes("C2FR", 4);
    res.u32(1); res.u32(n_inputs); res.u32(n_out); res.u32(n_step); res.u32(0);
    const size_t totals_at = res.buf.size();
    res.u64(0); res.u64(0);

    std::vector<uint32_t> addr;
    std::vector<uint8_t> data;
    std::vector<uint8_t> out(n_out), mem(n_step);
    struct Step { uint32_t layer, last; uint64_t cycles; };
    std::vector<Step> steps;
    std::vector<uint8_t> step_mem;

    auto t_last = std::chrono::steady_clock::now();
    for (uint32_t i = 0; i < n_inputs; i++) {
        const uint32_t k = in.u32();
        addr = in.u32s(k);
        data.resize(k);
        in.bytes(data.data(), k);
        sim.host_write(addr, data);

        steps.clear();
        step_mem.clear();
        uint64_t ticks = 0;
        for (;;) {
            ticks += sim.run_once(stepping, max_cycles, i);
            if (!stepping) break;
            steps.push_back({uint32_t(sim.top->layer), uint32_t(sim.top->last), uint64_t(sim.top->cycles)});
            const bool last = sim.top->last;
            sim.host_read(step_addr, mem.data());
            step_mem.insert(step_mem.end(), mem.begin(), mem.end());
            if (last) break;
            if (steps.size() > 100000) fail("stepping: `last` never went high", 3);
        }
#ifdef C2F_FLASH
        if (!sim.top->flash_ok)
            fail("input " + std::to_string(first_index + i) + ": the weights streamed from flash failed their "
                 "CRC-32 (the flash does not hold the program's stream)", 3);
#endif
        // ports at the final done (in stepping mode taken before the step reads)
        const Step fin = stepping ? steps.back()
            : Step{uint32_t(sim.top->layer), uint32_t(sim.top->last), uint64_t(sim.top->cycles)};
        sim.host_read(out_addr, out.data());

        res.u64(fin.cycles);
        res.u64(ticks);
        res.u32(fin.layer);
        res.u32(fin.last);
        res.u32(uint32_t(steps.size()));
#ifdef C2F_FLASH
        res.u32(uint32_t(sim.top->flash_wait));
#else
        res.u32(0);
#endif
        res.bytes(out.data(), n_out);
        for (size_t s = 0; s < steps.size(); s++) {
            res.u32(steps[s].layer); res.u32(steps[s].last); res.u64(steps[s].cycles);
            res.bytes(step_mem.data() + s * n_step, n_step);
        }

        if (i == 0 && vcd_path) sim.close_trace();
        auto now = std::chrono::steady_clock::now();
        if (i + 1 == n_inputs || now - t_last > std::chrono::milliseconds(200)) {
            std::printf("@progress %u %u\n", i + 1, n_inputs);
            std::fflush(stdout);
            t_last = now;
        }
    }

    const uint64_t total = sim.ticks;
    for (int b = 0; b < 8; b++) {
        res.buf[totals_at + b] = uint8_t(total >> (8 * b));
        res.buf[totals_at + 8 + b] = uint8_t(load_ticks >> (8 * b));
    }
    res.save(res_path);
    return 0;
}
