"""The two RTL backends (cocotb + Verilator, native Verilator) under real Verilator.

Two designs with the ports of `systolab_top`:

- `StandIn`, below: a memory behind the host port and a fake run that copies words. It checks the
  backends themselves (host port widths, read-back ranges, the watchdog, traces) in designs that
  build quickly and do not depend on the accelerator being right.
- the accelerator (`hw/verilog.py`), running compiled GEMMs: native and cocotb must give
  identical memory and identical counters, and the outputs must match numpy.

Builds are cached in the user cache folder (or $SYSTOLAB_CACHE), so only the first run is slow.
"""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from amaranth import Module, Mux, Signal
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from systolab.codegen.program import BundleError, Program, Region
from systolab.hw.counters import COUNTER_BITS, COUNTERS
from systolab.sim.rtl import BACKENDS, RtlError, run_rtl

from conftest import small_config

pytestmark = pytest.mark.rtl


# -- a stand-in for systolab_top ----------------------------------------------------------------

class StandIn(wiring.Component):
    """`systolab_top`'s ports; a run copies `insn_count` bus words from `insn_addr` to the words
    right after them, adding 1 to each (as one bus-wide integer), `memory.latency + 2` cycles
    per word."""

    def __init__(self, cfg):
        self._bus, self._words, self._latency = cfg.memory.bus_bytes, cfg.mem_words, cfg.memory.latency
        ports = {"start": In(1), "insn_addr": In(32), "insn_count": In(32),
                 "busy": Out(1), "done": Out(1),
                 "host_addr": In(range(self._words)), "host_we": In(1),
                 "host_wdata": In(8 * self._bus), "host_rdata": Out(8 * self._bus)}
        ports |= {f"cnt_{name}": Out(COUNTER_BITS) for name in COUNTERS}
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=8 * self._bus, depth=self._words, init=[])
        rd, wr = mem.read_port(), mem.write_port()
        src, i = Signal(range(self._words)), Signal(32)
        wait = Signal(range(self._latency + 1))
        run_we = Signal()
        m.d.comb += [
            rd.addr.eq(Mux(self.busy, src + i, self.host_addr)),
            self.host_rdata.eq(rd.data),
            wr.addr.eq(Mux(self.busy, src + self.insn_count + i, self.host_addr)),
            wr.data.eq(Mux(self.busy, rd.data + 1, self.host_wdata)),
            wr.en.eq(Mux(self.busy, run_we, self.host_we)),
        ]
        cnt = {name: getattr(self, f"cnt_{name}") for name in COUNTERS}
        with m.If(self.busy):
            m.d.sync += cnt["cycles"].eq(cnt["cycles"] + 1)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), self.done.eq(0), i.eq(0),
                                 src.eq(self.insn_addr // self._bus), *(c.eq(0) for c in cnt.values())]
                    m.next = "READ"
            with m.State("READ"):
                with m.If(i == self.insn_count):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [wait.eq(self._latency), cnt["mem_reads"].eq(cnt["mem_reads"] + 1)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.sync += cnt["load_wait"].eq(cnt["load_wait"] + 1)
                with m.If(wait == 0):
                    m.next = "WRITE"
                with m.Else():
                    m.d.sync += wait.eq(wait - 1)
            with m.State("WRITE"):
                m.d.comb += run_we.eq(1)
                m.d.sync += [i.eq(i + 1), cnt["mem_writes"].eq(cnt["mem_writes"] + 1)]
                m.next = "READ"
        return m


_standin_verilog = {}


def standin_verilog(cfg) -> str:
    if cfg.hash not in _standin_verilog:
        _standin_verilog[cfg.hash] = verilog.convert(StandIn(cfg), name="systolab_top", emit_src=False)
    return _standin_verilog[cfg.hash]


def copy_program(cfg, n_words, *, at=0, seed=0):
    """A stand-in program: `n_words` random bus words at byte `at`, copied (+1) right after."""
    bus = cfg.memory.bus_bytes
    rng = np.random.default_rng(seed)
    src = rng.integers(0, 256, size=(n_words, bus), dtype=np.uint8)
    src[::3] = 0                                   # zero words are not written: they must still work
    image = np.zeros(at + 2 * n_words * bus + 3, dtype=np.uint8)   # an odd length on purpose
    image[at:at + n_words * bus] = src.reshape(-1)
    regions = {"src": Region("src", at, (n_words, bus), "uint8", bus),
               "dst": Region("dst", at + n_words * bus, (n_words, bus), "uint8", bus)}
    prog = Program(cfg.compile_hash, [0] * n_words, image, at, regions, ("dst",))
    expected = np.array([list(((int.from_bytes(bytes(w), "little") + 1) % 2**(8 * bus)).to_bytes(bus, "little"))
                         for w in src], dtype=np.uint8).reshape(n_words, bus)
    return prog, expected


def expected_counters(cfg, n_words):
    c = dict.fromkeys(COUNTERS, 0)
    c.update(cycles=n_words * (cfg.memory.latency + 3) + 1, mem_reads=n_words, mem_writes=n_words,
             load_wait=n_words * (cfg.memory.latency + 1))
    return c


# bus widths that give every C++ port type: QData (64 bits) and VlWide<8> (256 bits); the
# accelerator tests below use 128-bit words
STANDIN_CONFIGS = {"bus8": small_config(bus=8, latency=3, mem_kib=64),
                   "bus32": small_config(bus=32, latency=5, mem_kib=64)}


@pytest.mark.parametrize("cfg_name", STANDIN_CONFIGS)
@pytest.mark.parametrize("n_words,at", [(1, 0), (37, 4096)])
def test_standin_backends_agree(cfg_name, n_words, at):
    cfg = STANDIN_CONFIGS[cfg_name]
    prog, expected = copy_program(cfg, n_words, at=at, seed=n_words)
    results = {b: run_rtl(cfg, prog, backend=b, verilog=standin_verilog(cfg)) for b in BACKENDS}
    for backend, res in results.items():
        assert res.backend == backend
        assert res.memory.dtype == np.uint8 and res.memory.shape == (cfg.mem_bytes,)
        np.testing.assert_array_equal(prog.read_outputs(res.memory)["dst"], expected, err_msg=backend)
        np.testing.assert_array_equal(prog.read_outputs(res.memory)["dst"].shape, (n_words, cfg.memory.bus_bytes))
        assert res.counters == expected_counters(cfg, n_words), backend
        assert res.build_s > 0 and res.sim_s >= 0
    native, cocotb = results["verilator"], results["cocotb"]
    np.testing.assert_array_equal(native.memory, cocotb.memory)
    assert native.counters == cocotb.counters


def test_cocotb_sees_every_signal_on_request():
    # the runner's default visibility (--public-flat-rw) gives the same run, only slower
    cfg = STANDIN_CONFIGS["bus8"]
    prog, expected = copy_program(cfg, 9)
    top = run_rtl(cfg, prog, verilog=standin_verilog(cfg))
    full = run_rtl(cfg, prog, verilog=standin_verilog(cfg), cocotb_visibility="all")
    assert full.build_dir != top.build_dir
    assert not (full.build_dir / "public.vlt").exists() and (top.build_dir / "public.vlt").exists()
    np.testing.assert_array_equal(full.memory, top.memory)
    assert full.counters == top.counters
    with pytest.raises(RtlError, match=r"^visibility must be one of top, all, not 'some'$"):
        run_rtl(cfg, prog, verilog=standin_verilog(cfg), cocotb_visibility="some")


@pytest.mark.parametrize("backend", BACKENDS)
def test_watchdog(backend):
    cfg = STANDIN_CONFIGS["bus8"]
    prog, _ = copy_program(cfg, 40)
    with pytest.raises(RtlError, match=rf"^{backend}: done did not rise within 50 cycles; "
                                       rf"run files in (.+)$") as err:
        run_rtl(cfg, prog, backend=backend, max_cycles=50, verilog=standin_verilog(cfg))
    run_dir = Path(re.search(r"run files in (.+)$", str(err.value)).group(1))
    assert json.loads((run_dir / "result.json").read_text())["status"] == "timeout"
    shutil.rmtree(run_dir)                        # kept for debugging; not needed here
    # just enough cycles
    need = expected_counters(cfg, 40)["cycles"]
    res = run_rtl(cfg, prog, backend=backend, max_cycles=need, verilog=standin_verilog(cfg))
    assert res.cycles == need


@pytest.mark.parametrize("backend", BACKENDS)
def test_readback_ranges(backend):
    cfg = STANDIN_CONFIGS["bus32"]
    bus = cfg.memory.bus_bytes
    prog, expected = copy_program(cfg, 5, at=2 * bus)
    v = standin_verilog(cfg)
    used = run_rtl(cfg, prog, backend=backend, verilog=v)
    assert used.read_range == (0, 12 * bus + bus)           # image (odd length) rounded up to a word
    outputs = run_rtl(cfg, prog, backend=backend, readback="outputs", verilog=v)
    assert outputs.read_range == (7 * bus, 12 * bus)
    np.testing.assert_array_equal(prog.read_outputs(outputs.memory)["dst"], expected)
    np.testing.assert_array_equal(outputs.memory[:7 * bus], prog.memory(cfg)[:7 * bus])
    part = run_rtl(cfg, prog, backend=backend, readback=(7 * bus + 3, 8 * bus - 1), verilog=v)
    assert part.read_range == (7 * bus, 8 * bus)
    np.testing.assert_array_equal(part.memory[7 * bus:8 * bus], expected[0])
    if backend == "verilator":                                 # the whole memory: quick natively
        full = run_rtl(cfg, prog, backend=backend, readback="all", verilog=v)
        assert full.read_range == (0, cfg.mem_bytes)
        np.testing.assert_array_equal(full.memory, used.memory)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("suffix", [".vcd", ".fst"])
def test_trace(backend, suffix, tmp_path):
    cfg = STANDIN_CONFIGS["bus8"]
    prog, expected = copy_program(cfg, 3)
    trace = tmp_path / "waves" / f"{backend}{suffix}"
    res = run_rtl(cfg, prog, backend=backend, trace=trace, verilog=standin_verilog(cfg))
    np.testing.assert_array_equal(prog.read_outputs(res.memory)["dst"], expected)
    data = trace.read_bytes()
    assert len(data) > 100
    if suffix == ".vcd":
        text = data.decode()
        assert "host_wdata" in text and "cnt_cycles" in text
    else:
        # an FST file opens with its header block: type 0 (FST_BL_HDR), then its length (329)
        assert data[0] == 0 and int.from_bytes(data[1:9], "big") == 329
    # a traced build is its own build: the untraced one is not touched
    plain = run_rtl(cfg, prog, backend=backend, verilog=standin_verilog(cfg))
    assert plain.build_dir != res.build_dir


def test_bad_arguments(tmp_path):
    cfg = STANDIN_CONFIGS["bus8"]
    prog, _ = copy_program(cfg, 2)
    v = standin_verilog(cfg)
    with pytest.raises(RtlError, match=r"^backend must be one of cocotb, verilator, not 'iverilog'$"):
        run_rtl(cfg, prog, backend="iverilog", verilog=v)
    with pytest.raises(RtlError, match=r"^trace must be a path ending in \.fst or \.vcd, not '.*x\.ghw'$"):
        run_rtl(cfg, prog, trace=tmp_path / "x.ghw", verilog=v)
    with pytest.raises(RtlError, match=r"^max_cycles must be a positive integer, not 0$"):
        run_rtl(cfg, prog, max_cycles=0, verilog=v)
    with pytest.raises(RtlError, match=r"^readback must be one of used, outputs, all or a \(start, end\) byte range, not 'some'$"):
        run_rtl(cfg, prog, readback="some", verilog=v)
    with pytest.raises(RtlError, match=r"^readback range \(0, 99999999\) must lie within the 65536-byte memory$"):
        run_rtl(cfg, prog, readback=(0, 99999999), verilog=v)
    other = STANDIN_CONFIGS["bus32"]
    with pytest.raises(BundleError, match=r"^program was compiled for config"):
        run_rtl(other, prog, verilog=standin_verilog(other))


# -- the accelerator ----------------------------------------------------------------------------

from systolab.codegen.gemm import compile_gemm, gemm_reference, random_gemm  # noqa: E402
from systolab.sim.functional import FunctionalSim  # noqa: E402

HW_CONFIGS = {"4x4": small_config(4, 4, sp=64, acc=32, mem_kib=64),
              "4x8": small_config(4, 8, sp=64, acc=32, latency=7, mem_kib=64)}
#: (M, K, N, relu): one tile, ragged edges in every dimension, several tiles and K chunks
GEMMS = [(8, 8, 8, False), (13, 21, 9, True), (33, 40, 20, False)]


@pytest.mark.parametrize("cfg_name", HW_CONFIGS)
@pytest.mark.parametrize("M,K,N,relu", GEMMS)
def test_accelerator_backends_agree(cfg_name, M, K, N, relu):
    cfg = HW_CONFIGS[cfg_name]
    g = random_gemm(M, K, N, seed=M * K + N, relu=relu)
    prog = compile_gemm(cfg, g)
    golden = FunctionalSim(cfg).run(prog)
    native = run_rtl(cfg, prog, backend="verilator")
    cocotb = run_rtl(cfg, prog, backend="cocotb")

    # the two backends: the same memory, byte for byte, and the same counters
    np.testing.assert_array_equal(native.memory, cocotb.memory)
    assert native.counters == cocotb.counters
    # and the right answer: numpy, and the functional simulator's whole memory
    np.testing.assert_array_equal(prog.read_outputs(native.memory)["C"], gemm_reference(g))
    np.testing.assert_array_equal(native.memory, golden.memory)
    assert set(native.counters) == set(COUNTERS)
    assert native.counters["array_busy"] == golden.matmul_rows
    assert native.cycles >= -(-g.macs // (cfg.rows * cfg.cols))


def test_accelerator_matches_amaranth_simulation():
    # a third opinion on the same RTL: Amaranth's own simulator (slow, so one small run)
    from support.simrun import simulate_program

    cfg = HW_CONFIGS["4x4"]
    g = random_gemm(8, 12, 6, seed=5)
    prog = compile_gemm(cfg, g)
    amaranth = simulate_program(cfg, prog)
    native = run_rtl(cfg, prog, backend="verilator", readback="all")
    np.testing.assert_array_equal(native.memory, amaranth.memory)
    assert native.counters == amaranth.counters
