// The board around a Verilated hdl.board.soc.Soc: an SPI flash holding an image, and the
// host's UART line, driven by commands on stdin (sim/board.py is the other end).
//
// Build: sim.verilator.build(..., harness=board_harness.cpp) -CFLAGS -DC2F_TOP=V<top>
// Run:   sim FLASH_FILE FLASH_BASE DIVISOR
//
// The flash (a W25Q128JV in SPI mode 0, flash_model.h) holds FLASH_FILE from address
// FLASH_BASE and reads 0xFF elsewhere; it starts in deep power-down and wakes on 0xAB (when
// CS goes inactive), as sim/models.py's flash models.  A design with flash_copi/flash_cipo
// uses IO0 and IO1; built with -DC2F_QUAD (a design whose weights stream) it has the four
// lines flash_dq_o/flash_dq_oe/flash_dq_i, and a bus fight stops the run.  The UART runs
// at DIVISOR clock cycles per bit, 8N1, LSB first, like sim/models.py's uart_send and
// UartMonitor.
//
// Commands, one a line; every command is answered with one line
// "d CYCLES LED_READY LED_ERROR FRAMING_ERRORS HEX", HEX being received bytes taken now:
//   w HEX       queue bytes for the device's RX line (8N1)
//   f HEX       queue bytes whose stop bit is low (framing errors)
//   b N         queue a break: the line low for N cycles
//   r N MAX     run until the queue has been sent and N received bytes are unread, or MAX
//               cycles after the queue was sent; take up to N of them
//   c N         run N cycles (the queue keeps going); take nothing
//   x           drop the unread received bytes
//   q           exit

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "verilated.h"

#ifndef C2F_TOP
#error "define C2F_TOP to the Verilated class name, e.g. -DC2F_TOP=Vtop"
#endif
#define C2F_STR_(x) #x
#define C2F_STR(x) C2F_STR_(x)
#include C2F_STR(C2F_TOP.h)

using Top = C2F_TOP;

#include "flash_model.h"

[[noreturn]] static void fail(const std::string& msg) {
    std::fprintf(stderr, "board harness: %s\n", msg.c_str());
    std::exit(2);
}

struct Line {                       // the host's transmitter: (level, cycles) segments
    std::deque<std::pair<int, uint64_t>> segments;
    uint64_t divisor = 8;

    void byte(uint8_t b, bool good_stop) {
        segments.push_back({0, divisor});
        for (int k = 0; k < 8; k++) segments.push_back({b >> k & 1, divisor});
        segments.push_back({good_stop ? 1 : 0, divisor});
        if (!good_stop) segments.push_back({1, divisor});
    }
    bool busy() const { return !segments.empty(); }
    int level() {                   // the level for this cycle; advances the queue
        if (segments.empty()) return 1;
        auto& s = segments.front();
        int v = s.first;
        if (--s.second == 0) segments.pop_front();
        return v;
    }
};

struct Monitor {                    // the host's receiver, sampling each bit at its middle
    uint64_t divisor = 8;
    int prev = 1, state = 0;        // 0 idle, 1 in a frame, 2 waiting for the line to rise
    uint64_t wait = 0;
    int bit = 0, value = 0;
    uint64_t framing_errors = 0;
    std::deque<uint8_t> data;

    void step(int tx) {
        if (state == 0) {
            if (prev && !tx) state = 1, wait = divisor / 2, bit = -1, value = 0;
        } else if (state == 1) {
            if (--wait == 0) {
                if (bit == -1) {
                    if (tx) state = 0;                       // a glitch, not a start bit
                    else bit = 0, wait = divisor;
                } else if (bit < 8) {
                    value |= (tx & 1) << bit;
                    bit++, wait = divisor;
                } else {
                    if (tx) data.push_back(uint8_t(value)), state = 0;
                    else framing_errors++, state = 2;
                }
            }
        } else if (tx) {
            state = 0;
        }
        prev = tx;
    }
};

static std::vector<uint8_t> unhex(const char* s) {
    std::vector<uint8_t> out;
    while (s[0] && s[1] && s[0] != '\n') {
        unsigned v;
        if (std::sscanf(s, "%2x", &v) != 1) fail("bad hex");
        out.push_back(uint8_t(v));
        s += 2;
    }
    return out;
}

int main(int argc, char** argv) {
    if (argc != 4) fail("usage: sim FLASH_FILE FLASH_BASE DIVISOR");
    QuadFlash flash;
    {
        FILE* f = std::fopen(argv[1], "rb");
        if (!f) fail(std::string("cannot open ") + argv[1]);
        int c;
        while ((c = std::fgetc(f)) != EOF) flash.image.push_back(uint8_t(c));
        std::fclose(f);
    }
    flash.base = uint32_t(std::strtoul(argv[2], nullptr, 0));
    Line line;
    Monitor monitor;
    line.divisor = monitor.divisor = std::strtoull(argv[3], nullptr, 0);
    if (line.divisor < 4) fail("divisor must be at least 4");

    auto ctx = std::make_unique<VerilatedContext>();
    auto top = std::make_unique<Top>(ctx.get());
    uint64_t cycles = 0;
    top->uart_rx = 1;
#ifdef C2F_QUAD
    top->flash_dq_i = 0xF;
#else
    top->flash_cipo = 1;
#endif
    top->rst = 1;
    top->clk = 0;
    top->eval();
    auto tick = [&]() {
        top->uart_rx = line.level();
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
        cycles++;
#ifdef C2F_QUAD
        flash.step(top->flash_sck, top->flash_cs, top->flash_dq_o);
        top->flash_dq_i = flash.dq_i(top->flash_dq_o, top->flash_dq_oe);
        if (flash.contention) fail("the design and the flash drive the same I/O line at once");
#else
        flash.step(top->flash_sck, top->flash_cs, top->flash_copi);
        top->flash_cipo = flash.dq_i(top->flash_copi, 1) >> 1 & 1;
#endif
        monitor.step(top->uart_tx);
    };
    for (int i = 0; i < 4; i++) tick();
    top->rst = 0;

    static char buf[1 << 20];
    while (std::fgets(buf, sizeof buf, stdin)) {
        size_t take = 0;
        char cmd = buf[0];
        if (cmd == 'q') break;
        if (cmd == 'w' || cmd == 'f') {
            for (uint8_t b : unhex(buf + 2)) line.byte(b, cmd == 'w');
        } else if (cmd == 'b') {
            line.segments.push_back({0, std::strtoull(buf + 2, nullptr, 0)});
        } else if (cmd == 'c') {
            for (uint64_t n = std::strtoull(buf + 2, nullptr, 0); n; n--) tick();
        } else if (cmd == 'r') {
            char* end;
            take = std::strtoull(buf + 2, &end, 0);
            uint64_t max = std::strtoull(end, nullptr, 0);
            while (line.busy()) tick();
            for (uint64_t n = 0; n < max && monitor.data.size() < take; n++) tick();
        } else if (cmd == 'x') {
            monitor.data.clear();
        } else {
            fail(std::string("unknown command: ") + buf);
        }
        if (take > monitor.data.size()) take = monitor.data.size();
        std::printf("d %llu %d %d %llu ", (unsigned long long)cycles, int(top->led_ready), int(top->led_error),
                    (unsigned long long)monitor.framing_errors);
        for (size_t i = 0; i < take; i++) {
            std::printf("%02x", monitor.data.front());
            monitor.data.pop_front();
        }
        std::printf("\n");
        std::fflush(stdout);
    }
    top->final();
    return 0;
}
