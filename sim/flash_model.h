// The board's SPI NOR flash (W25Q128JV) on its four I/O lines, for the C++ harnesses: the
// same part, commands and timing as sim/models.py's MultiIoFlashModel, which documents them
// (wake 0xAB, power-down 0xB9, reads 0x03 / 0x0B / 0x3B / 0x6B with 8 dummy clocks for the
// fast reads, the volatile status write 0x50 then 0x31 that sets QE, 0x35 reading it back;
// a quad read with QE clear drives nothing, so the host reads its pull-ups).
//
// Call step() once a cycle after the clock edge with the design's pins, then give the design
// dq_i() for the next edge: data changes just after SCK falls, as the Python model's does.
#pragma once

#include <cstdint>
#include <vector>

struct QuadFlash {
    std::vector<uint8_t> image;
    uint32_t base = 0;
    bool powered_down = true, selected = false, volatile_we = false;
    uint8_t sr2 = 0;                 // bit 1: QE
    int prev_sck = 0, drive = 0, driven = 0;
    uint64_t bits = 0, contention = 0;
    uint32_t header = 0;
    int opcode = -1, written = -1;
    int64_t address = -1;

    uint8_t byte(uint32_t a) const {
        int64_t off = int64_t(a & 0xFFFFFF) - int64_t(base);
        return off >= 0 && off < int64_t(image.size()) ? image[size_t(off)] : 0xFF;
    }
    static int width_of(int op) {
        return op == 0x03 || op == 0x0B ? 1 : op == 0x3B ? 2 : op == 0x6B ? 4 : 0;
    }
    static uint64_t data_start(int op) { return op == 0x03 ? 32 : 40; }

    void end() {
        if (opcode < 0) return;
        const bool awake = !powered_down, enabled = volatile_we;
        volatile_we = awake && opcode == 0x50;
        if (awake && enabled && opcode == 0x31 && written >= 0) sr2 = uint8_t(written);
        if (opcode == 0xAB) powered_down = false;
        else if (opcode == 0xB9 && awake) powered_down = true;
    }

    // The lines driven after the falling edge that ends clock ``bits``.
    void output() {
        drive = driven = 0;
        if (opcode == 0x35 && bits >= 8) {
            drive = (sr2 >> (7 - (bits - 8) % 8) & 1) << 1, driven = 2;
            return;
        }
        const int w = width_of(opcode);
        if (!w || address < 0 || bits < data_start(opcode) || (w == 4 && !(sr2 & 2))) return;
        const uint64_t index = (bits - data_start(opcode)) * uint64_t(w);
        const int v = byte(uint32_t(address + int64_t(index / 8))) >> (8 - w - int(index % 8)) & ((1 << w) - 1);
        if (w == 1) drive = v << 1, driven = 2;
        else drive = v, driven = (1 << w) - 1;
    }

    void step(int sck, int cs, int host) {
        if (cs != int(selected)) {
            selected = cs;
            if (selected) {
                bits = 0, header = 0, opcode = -1, written = -1, address = -1;
            } else {
                end();
                drive = driven = 0;
            }
        } else if (selected && sck && !prev_sck) {
            if (bits < 32) header = header << 1 | uint32_t(host & 1);
            bits++;
            if (bits == 8) opcode = int(header & 0xFF);
            else if (bits == 16) written = int(header & 0xFF);
            else if (bits == 32 && width_of(opcode)) address = header & 0xFFFFFF;
        } else if (selected && !sck && prev_sck && opcode >= 0 && !powered_down) {
            output();
        }
        prev_sck = sck;
    }

    // What the host's pins read: the flash where it drives, else the host's own output, else
    // the pull-up.  A line both drive is a bus fight, counted.
    int dq_i(int host, int host_oe) {
        if (host_oe & driven) contention++;
        return (drive & driven) | (host & host_oe & ~driven) | (0xF & ~(host_oe | driven));
    }
};
