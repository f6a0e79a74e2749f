"""sim.verilator (Verilator + C++ harness) against a small dummy accelerator and its model.

The dummy has the accelerator's exact port list: a 256-byte activation memory on the host
port; a run is three 'layers', layer L taking LAYER_CYCLES[L] busy cycles, during which it
adds L + 1 to every byte (a pipelined read-modify-write sweep of the memory).  Weight
words written through the load port accumulate into a 32-bit checksum that the host reads
at addresses 0x100..0x103.  The Python model below predicts outputs, cycle counts and
per-layer memory exactly.
"""

import shutil

import numpy as np
import pytest
from amaranth.hdl import Array, Instance, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sim import verilator as vl

LAYER_CYCLES = (300, 310, 320)
WSUM_ADDR = 0x100

needs_verilator = pytest.mark.skipif(shutil.which("verilator") is None,
                                     reason="verilator not installed (make setup / apt-get install verilator)")


class DummyAccelerator(wiring.Component):
    start: In(1)
    step: In(1)
    busy: Out(1)
    done: Out(1)
    layer: Out(8)
    last: Out(1)
    cycles: Out(32)
    host_addr: In(16)
    host_wdata: In(8)
    host_we: In(1)
    host_rdata: Out(8)
    wload_addr: In(16)
    wload_data: In(32)
    wload_we: In(1)

    def __init__(self, external_adder=False):
        self.external_adder = external_adder    # the increment in a separate Verilog module
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=8, depth=256, init=[])
        rp = mem.read_port()
        wp = mem.write_port()
        t = Signal(16)
        step_mode = Signal()
        resume = Signal()
        wsum = Signal(32)
        rd_wsum = Signal()
        rd_byte = Signal(2)
        n_layers = len(LAYER_CYCLES)
        layer_len = Array(LAYER_CYCLES)[self.layer]

        m.d.sync += self.done.eq(0)
        m.d.comb += self.host_rdata.eq(Mux(rd_wsum, wsum.word_select(rd_byte, 8), rp.data))
        incremented = Signal(8)
        if self.external_adder:
            m.submodules.add = Instance("c2f_test_add8", i_a=rp.data, i_b=(self.layer + 1)[:8],
                                        o_y=incremented)
        else:
            m.d.comb += incremented.eq(rp.data + self.layer + 1)
        with m.If(self.busy):
            m.d.comb += [
                rp.addr.eq(t[:8]),
                wp.addr.eq((t - 1)[:8]),
                wp.data.eq(incremented),
                wp.en.eq((t >= 1) & (t <= 256)),
            ]
            m.d.sync += [t.eq(t + 1), self.cycles.eq(self.cycles + 1)]
            with m.If(t == layer_len - 1):
                m.d.sync += t.eq(0)
                with m.If(self.layer == n_layers - 1):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1), self.last.eq(1), resume.eq(0)]
                with m.Elif(step_mode):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1), resume.eq(1)]
                with m.Else():
                    m.d.sync += self.layer.eq(self.layer + 1)
        with m.Else():
            m.d.comb += [
                rp.addr.eq(self.host_addr[:8]),
                wp.addr.eq(self.host_addr[:8]),
                wp.data.eq(self.host_wdata),
                wp.en.eq(self.host_we & (self.host_addr[8:] == 0)),
            ]
            m.d.sync += [rd_wsum.eq(self.host_addr[8:] != 0), rd_byte.eq(self.host_addr[:2])]
            with m.If(self.wload_we):
                lanes = [self.wload_data[8 * j:8 * j + 8].as_signed() for j in range(4)]
                mix = sum((j + 1) * lane for j, lane in enumerate(lanes))
                m.d.sync += wsum.eq(wsum + (self.wload_addr + 1) * mix)
            with m.If(self.start):
                m.d.sync += [self.busy.eq(1), step_mode.eq(self.step), t.eq(0), self.last.eq(0)]
                with m.If(resume):
                    m.d.sync += self.layer.eq(self.layer + 1)
                with m.Else():
                    m.d.sync += [self.layer.eq(0), self.cycles.eq(0)]
        return m


class DummyModel:
    """What the dummy must produce."""

    def __init__(self, weights, weight_addrs=None):
        self.mem = np.zeros(256, np.uint8)
        self.wsum = 0
        addrs = range(len(weights)) if weight_addrs is None else weight_addrs
        for a, w in zip(addrs, weights):
            lanes = [((int(w) >> 8 * j) & 0xFF) for j in range(4)]
            mix = sum((j + 1) * (v - 256 if v >= 128 else v) for j, v in enumerate(lanes))
            self.wsum = (self.wsum + (int(a) + 1) * mix) & 0xFFFFFFFF

    def read(self, addrs):
        wb = self.wsum.to_bytes(4, "little")
        return np.array([wb[a & 3] if a >= 256 else self.mem[a] for a in addrs], np.uint8)

    def run(self, writes, out_addrs, step_addrs=None):
        for a, v in writes:
            if a < 256:
                self.mem[a] = v
        steps = []
        for layer in range(len(LAYER_CYCLES)):
            self.mem += np.uint8(layer + 1)
            if step_addrs is not None:
                steps.append((layer, sum(LAYER_CYCLES[:layer + 1]), self.read(step_addrs)))
        return self.read(out_addrs), steps


OUT_ADDRS = list(range(256)) + [WSUM_ADDR + i for i in range(4)]


def random_job(rng, n_inputs, n_weights=40):
    weights = rng.integers(0, 1 << 32, n_weights, dtype=np.uint64)
    inputs = []
    for _ in range(n_inputs):
        k = int(rng.integers(1, 80))
        addrs = rng.integers(0, 256, k)
        addrs[0] = 300                          # outside the memory: must be ignored
        inputs.append([(int(a), int(v)) for a, v in zip(addrs, rng.integers(0, 256, k))])
    return weights, inputs


@pytest.fixture(scope="module")
def exe():
    if shutil.which("verilator") is None:
        pytest.skip("verilator not installed (make setup / apt-get install verilator)")
    return vl.build(DummyAccelerator(), "dummy_accel")


@needs_verilator
def test_batch_outputs_and_cycles(exe):
    rng = np.random.default_rng(1)
    weights, inputs = random_job(rng, 6)
    # negative words are taken two's complement
    weights = [int(w) - (1 << 32) if w >= 1 << 31 else int(w) for w in weights]
    res = vl.run(exe, weights, inputs, OUT_ADDRS)
    model = DummyModel(weights)
    for i, writes in enumerate(inputs):
        expect, _ = model.run(writes, OUT_ADDRS)
        np.testing.assert_array_equal(res["outputs"][i], expect, err_msg=f"input {i}")
    total = sum(LAYER_CYCLES)
    assert res["cycles"].tolist() == [total] * len(inputs)
    assert res["ticks"].tolist() == [total + 1] * len(inputs)     # + the start cycle
    assert res["layer"].tolist() == [len(LAYER_CYCLES) - 1] * len(inputs)
    assert res["last"].all()
    assert res["steps"] is None
    assert res["load_ticks"] == 3 + len(weights) + 1              # reset, words, idle


@needs_verilator
def test_uniform_inputs_and_progress(exe):
    rng = np.random.default_rng(2)
    n, addrs = 300, np.arange(10, 90)
    data = rng.integers(0, 256, (n, addrs.size))
    weight_addrs = rng.permutation(1000)[:16]
    weights = rng.integers(0, 1 << 32, 16, dtype=np.uint64)
    calls = []
    res = vl.run(exe, weights, data, [0, 9, 10, 50, 89, 90, 255, 256, 257, 258, 259],
                 input_addrs=addrs, weight_addrs=weight_addrs, progress=lambda d, t: calls.append((d, t)))
    model = DummyModel(weights, weight_addrs)
    for i in range(n):
        expect, _ = model.run(zip(addrs, data[i]), [0, 9, 10, 50, 89, 90, 255, 256, 257, 258, 259])
        np.testing.assert_array_equal(res["outputs"][i], expect, err_msg=f"input {i}")
    assert calls and calls[-1] == (n, n)
    assert res["ticks_per_second"] > 0


@needs_verilator
def test_parallel_jobs(exe):
    """Three processes on chunks of the batch; only written addresses (and the weight sum)
    are compared, since the dummy's other bytes carry over from earlier inputs."""
    rng = np.random.default_rng(6)
    n, addrs = 100, np.arange(10, 90)
    data = rng.integers(0, 256, (n, addrs.size))
    weights = rng.integers(0, 1 << 32, 16, dtype=np.uint64)
    out_addrs = list(addrs) + [WSUM_ADDR + i for i in range(4)]
    calls = []
    res = vl.run(exe, weights, data, out_addrs, input_addrs=addrs, jobs=3,
                 progress=lambda d, t: calls.append((d, t)))
    ref = vl.run(exe, weights, data, out_addrs, input_addrs=addrs)
    np.testing.assert_array_equal(res["outputs"], ref["outputs"])
    np.testing.assert_array_equal(res["cycles"], ref["cycles"])
    np.testing.assert_array_equal(res["outputs"][:, :addrs.size], (data + 6) & 0xFF)
    assert calls[-1] == (n, n)
    with pytest.raises(vl.SimulatorError, match=r"timeout: input (0|33|66) "):
        vl.run(exe, weights, data, out_addrs, input_addrs=addrs, jobs=3, max_cycles=100)


@needs_verilator
def test_stepping(exe):
    rng = np.random.default_rng(3)
    weights, inputs = random_job(rng, 3)
    step_addrs = list(range(0, 260, 3))
    res = vl.run(exe, weights, inputs, OUT_ADDRS, step_addrs=step_addrs)
    model = DummyModel(weights)
    n_layers = len(LAYER_CYCLES)
    for i, writes in enumerate(inputs):
        expect, steps = model.run(writes, OUT_ADDRS, step_addrs)
        np.testing.assert_array_equal(res["outputs"][i], expect)
        got = res["steps"][i]
        assert got["layer"].tolist() == list(range(n_layers))
        assert got["last"].tolist() == [False] * (n_layers - 1) + [True]
        assert got["cycles"].tolist() == [c for _, c, _ in steps]
        assert got["mem"].shape == (n_layers, len(step_addrs))
        for s, (_, _, mem) in enumerate(steps):
            np.testing.assert_array_equal(got["mem"][s], mem, err_msg=f"input {i} layer {s}")
    assert res["cycles"].tolist() == [sum(LAYER_CYCLES)] * len(inputs)
    assert res["ticks"].tolist() == [sum(LAYER_CYCLES) + n_layers] * len(inputs)


@needs_verilator
def test_vcd(exe, tmp_path):
    rng = np.random.default_rng(4)
    weights, inputs = random_job(rng, 2, n_weights=5)
    with pytest.raises(vl.SimulatorError, match="without tracing"):
        vl.run(exe, weights, inputs, OUT_ADDRS, vcd=tmp_path / "x.vcd")
    traced = vl.build(DummyAccelerator(), "dummy_accel", trace=True)
    assert traced != exe
    vcd = tmp_path / "dummy.vcd"
    res = vl.run(traced, weights, inputs, OUT_ADDRS, vcd=vcd)
    ref = vl.run(exe, weights, inputs, OUT_ADDRS)
    np.testing.assert_array_equal(res["outputs"], ref["outputs"])
    text = vcd.read_text()
    assert "$enddefinitions" in text and "host_rdata" in text and "cycles" in text
    # only the first input is traced: the last time stamp is within its run
    last_time = max(int(line[1:]) for line in text.splitlines() if line.startswith("#"))
    first_end = ref["load_ticks"] + len(inputs[0]) + ref["ticks"][0] + len(OUT_ADDRS)
    assert last_time == 10 * first_end


@needs_verilator
def test_extra_sources(tmp_path):
    adder = tmp_path / "add8.v"
    adder.write_text("module c2f_test_add8(input [7:0] a, input [7:0] b, output [7:0] y);\n"
                     "  assign y = a + b;\nendmodule\n")
    exe = vl.build(DummyAccelerator(external_adder=True), "dummy_accel_ext", extra_sources=[adder])
    rng = np.random.default_rng(5)
    weights, inputs = random_job(rng, 2)
    res = vl.run(exe, weights, inputs, OUT_ADDRS)
    model = DummyModel(weights)
    for i, writes in enumerate(inputs):
        np.testing.assert_array_equal(res["outputs"][i], model.run(writes, OUT_ADDRS)[0])


@needs_verilator
def test_timeout(exe):
    with pytest.raises(vl.SimulatorError, match="timeout: input 0"):
        vl.run(exe, [1], [[(0, 1)]], [0], max_cycles=100)


@needs_verilator
def test_build_errors(tmp_path):
    text = vl._verilog_of(DummyAccelerator(), "dummy_accel")
    with pytest.raises(vl.SimulatorError, match="lacks ports the harness drives: .*wload_we"):
        vl.build(text.replace("wload_we", "wload_xx"), "dummy_accel", cache_dir=tmp_path)
    broken = text.replace("endmodule", "  this is not verilog;\nendmodule", 1)
    with pytest.raises(vl.SimulatorError, match=r"(?s)build of 'dummy_accel' failed.*last lines"):
        vl.build(broken, "dummy_accel", cache_dir=tmp_path, verbose=False)
    assert not any(tmp_path.iterdir()), "failed builds leave nothing in the cache"


def test_verilator_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(vl.SimulatorError, match="verilator not found: run `make setup`"):
        vl.build("module m; endmodule", "m", cache_dir=tmp_path)
