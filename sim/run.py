"""The run flow: compile a workload for a config, run it on one simulator, check it, report it.

Every run goes through here and ends in one `systolab.metrics.RunReport`: `systolab run` (a GEMM
or a quantized model), the sweeps' evaluators and the web service. So a number in a sweep and a
number from `systolab run` come from the same code.

    >>> report = run_workload(cfg, "gemm:64x64x64", "verilator")
    >>> report.cycles, report.utilization, report.to_json()

Simulators (`SIMS`): the functional golden model, the performance model (cycles predicted,
outputs from the functional simulator), the RTL under cocotb + Verilator, and the RTL under a
native Verilator harness (same answers, no Python in the loop).

Limits pass straight through: `max_cycles` is the RTL's cycle watchdog, a bound on the model's
prediction and, for a network, a budget for all its layers together (`LimitError` past it).
What can be checked before the work starts is: a GEMM's memory footprint is known from its shape
before any operand is generated.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from systolab.cache import Recent
from systolab.codegen.gemm import check_gemm_fits, compile_gemm, gemm_reference, random_gemm
from systolab.codegen.mlir_import import generated_mlir_inputs, load_mlir
from systolab.codegen.network import CompiledNetwork, HostStep, compile_network, network_reference
from systolab.codegen.onnx_import import generated_inputs, load_onnx, ort_tensors
from systolab.codegen.transformer import layer_agreement
from systolab.errors import LimitError, UserError
from systolab.metrics import RunReport, cycle_metrics
from systolab.perf import predict

from .functional import FunctionalSim
from .rtl import DEFAULT_MAX_CYCLES, run_rtl

__all__ = ["SIMS", "parse_gemm", "check_sim", "check_model_inputs", "RunOutcome", "run_program",
           "run_workload", "NetworkRun", "run_network", "run_onnx", "run_onnx_workload", "run_mlir",
           "run_mlir_workload"]

#: simulators `systolab run --sim` accepts
SIMS = ("func", "model", "rtl", "verilator")

_GEMM = re.compile(r"^gemm:(\d+)x(\d+)x(\d+)$")


def parse_gemm(spec: str) -> tuple[int, int, int]:
    m = _GEMM.match(spec.strip())
    if not m or min(int(x) for x in m.groups()) < 1:
        raise UserError(f"--workload must be gemm:MxKxN with M, K, N >= 1 (e.g. gemm:64x64x64), not {spec!r}")
    return tuple(int(x) for x in m.groups())


def check_sim(sim: str) -> None:
    if sim not in SIMS:
        raise UserError(f"--sim must be one of {', '.join(SIMS)}, not {sim!r}")


# -- one program ----------------------------------------------------------------------------------
@dataclass
class RunOutcome:
    """What one simulator said about one program."""

    outputs: dict[str, np.ndarray]
    cycles: int | None
    counters: dict[str, int]
    timings: dict[str, float]
    memory: np.ndarray | None = None      # external memory after the run


def run_program(config, program, sim: str, *, trace: str | None = None,
                max_cycles: int | None = None) -> RunOutcome:
    """Run a compiled program on one simulator; returns its outputs, cycles and counters. With
    `memory.size_kib: auto` the simulated memory is sized to the program."""
    check_sim(sim)
    config = config.sized_for(len(program.image))
    t0 = time.perf_counter()
    if sim == "func":
        res = FunctionalSim(config).run(program)
        return RunOutcome(res.outputs, None, {"array_busy": res.matmul_rows},
                          {"sim_s": time.perf_counter() - t0}, res.memory)
    if sim == "model":
        pred = predict(config, program)
        model_s = time.perf_counter() - t0
        if max_cycles is not None and pred.cycles > max_cycles:
            raise LimitError(f"the performance model predicts {pred.cycles:,} cycles, more than "
                             f"max_cycles ({max_cycles:,})")
        res = FunctionalSim(config).run(program)
        for addr, cycle in pred.stamps:        # the cycle counter the RTL would write
            res.memory[addr:addr + 4] = np.frombuffer(np.uint32(cycle % (1 << 32)).tobytes(), np.uint8)
        counters = {"cycles": pred.cycles, "array_busy": pred.array_busy,
                    **{f"{q}_busy": v for q, v in pred.busy.items()}}
        return RunOutcome(res.outputs, pred.cycles, counters,
                          {"model_s": model_s, "sim_s": time.perf_counter() - t0}, res.memory)
    res = run_rtl(config, program, backend="cocotb" if sim == "rtl" else "verilator", trace=trace,
                  max_cycles=DEFAULT_MAX_CYCLES if max_cycles is None else max_cycles)
    return RunOutcome(program.read_outputs(res.memory), res.counters["cycles"], dict(res.counters),
                      {"build_s": 0.0 if res.build_reused else res.build_s, "sim_s": res.sim_s},
                      res.memory)


# -- a GEMM ---------------------------------------------------------------------------------------
def run_workload(config, workload: str, sim: str, *, seed: int = 0, relu: bool = False,
                 trace: str | None = None, max_cycles: int | None = None, on_program=None) -> RunReport:
    """Compile and run a workload (`gemm:MxKxN`, or `onnx:PATH` / `mlir:PATH` on generated
    inputs), check it against numpy. `on_program(program)` sees a GEMM's compiled program."""
    check_sim(sim)
    if workload.startswith("onnx:"):
        return run_onnx_workload(config, workload[len("onnx:"):], sim, seed=seed, max_cycles=max_cycles)
    if workload.startswith("mlir:"):
        return run_mlir_workload(config, workload[len("mlir:"):], sim, seed=seed, max_cycles=max_cycles)
    shape = parse_gemm(workload)
    check_gemm_fits(config, shape, what=workload)     # before any operand exists
    g = random_gemm(*shape, seed=seed, relu=relu)
    t0 = time.perf_counter()
    program = compile_gemm(config, g, name=workload)
    compile_s = time.perf_counter() - t0
    if on_program is not None:
        on_program(program)
    out = run_program(config, program, sim, trace=trace, max_cycles=max_cycles)
    mismatches = int(np.count_nonzero(out.outputs["C"] != gemm_reference(g)))
    return RunReport.of(config, macs=program.macs, cycles=out.cycles, mismatches=mismatches, sim=sim,
                        workload=workload, instructions=program.insn_count, counters=out.counters,
                        timings={"compile_s": compile_s, **out.timings})


# -- a network ------------------------------------------------------------------------------------
@dataclass
class NetworkRun:
    values: dict[str, np.ndarray]          # every int8 tensor the run produced (NHWC)
    outputs: dict[str, np.ndarray]         # the model's outputs by name
    layers: list[dict]                     # per step: name, op, where, cycles, macs, ...
    #: seconds the numpy reference took when the run's values are it (`_model_run`), else None
    reference_s: float | None = None
    #: the hardware (or model) counters of the whole run when the network ran as one program
    counters: dict[str, int] | None = None
    fused: bool = False

    @property
    def cycles(self) -> int | None:
        cyc = [r["cycles"] for r in self.layers if r["where"] == "accelerator"]
        return None if any(c is None for c in cyc) else sum(cyc)


#: the last few results of what does not depend on the config, by key: the numpy reference and
#: ONNX Runtime's tensors of a model on an input and the imported network, which a sweep over
#: many configs of one network would otherwise redo for every config (seconds each at full size)
_REFERENCES, _ORT_TENSORS, _NETWORKS = Recent(2), Recent(2), Recent(2)


def _load_onnx(model: str | Path, input_shapes: dict[str, tuple] | None = None):
    """`load_onnx`, kept in `_NETWORKS` by file (path, size, modification time) and input
    shapes: a sweep imports its model once per worker, not once per config (0.2 s each on
    ResNet-18, a tenth of a model-only evaluation). A `Network` is not changed once built."""
    st = Path(model).stat()
    key = (str(Path(model).resolve()), st.st_size, st.st_mtime_ns, tuple(sorted((input_shapes or {}).items())))
    return _NETWORKS.get(key, lambda: load_onnx(model, input_shapes=input_shapes))


def _model_key(model: str | Path, inputs: dict[str, np.ndarray]) -> tuple:
    """What identifies a model file and its inputs (path, size, modification time, the inputs'
    bytes) for `Recent`."""
    st = Path(model).stat()
    digest = hashlib.sha1()
    for k in sorted(inputs):
        v = np.ascontiguousarray(inputs[k])
        digest.update(f"{k}:{v.dtype}:{v.shape}".encode())
        digest.update(v.tobytes())
    return str(Path(model).resolve()), st.st_size, st.st_mtime_ns, digest.hexdigest()


def run_network(compiled: CompiledNetwork, inputs: dict[str, np.ndarray], sim: str, *,
                on_layer=None, max_cycles: int | None = None, reference_key: tuple | None = None,
                fused: bool | None = None) -> NetworkRun:
    """Run a compiled network on `sim`; host steps run in numpy. `max_cycles` bounds the whole
    network.

    fused (default: whenever `CompiledNetwork.can_fuse`): the layers run as one program, as a
    deployed network would (layers overlap); each layer's cycles are the differences of the
    STAMPs after the layers (the RTL's cycle counter, or the cycle the model predicts), and
    the run's counters are the whole program's (`NetworkRun.counters`). fused=False: each layer
    is its own program, run from start to done with external memory carried from one run to
    the next; each layer has its own counters."""
    check_sim(sim)
    cfg, net = compiled.cfg.sized_for(compiled.mem_needed), compiled.net
    if not compiled.has_programs:
        if sim != "model":
            raise ValueError(f"{net.name} was compiled without programs: only --sim model runs it")
        return _model_run(compiled, inputs, on_layer=on_layer, max_cycles=max_cycles, reference_key=reference_key)
    if fused is None:
        fused = compiled.can_fuse
    if fused:
        return _fused_run(compiled, inputs, sim, on_layer=on_layer, max_cycles=max_cycles)
    values: dict[str, np.ndarray] = {}
    io = dict(inputs)
    mem = compiled.image.copy()
    records = []
    used = 0
    for s in compiled.steps:
        t0 = time.perf_counter()
        if isinstance(s, HostStep):
            records.append(_host_step(compiled, s, values, io, mem))
        else:
            budget = None if max_cycles is None else max_cycles - used
            if budget is not None and budget < 1:
                raise LimitError(f"{net.name}: max_cycles ({max_cycles:,}) used up before layer {s.name!r}")
            out = run_program(cfg, compiled.program(s, mem), sim, max_cycles=budget)
            used += out.cycles or 0
            spec = net.tensors[s.layer.output]
            v = np.asarray(out.outputs[s.layer.output]).reshape(spec.shape)
            values[spec.name] = v
            compiled.regions[spec.name].write(mem, v.reshape(-1, spec.c))
            records.append(_layer_record(s, out.cycles, out.counters, time.perf_counter() - t0))
        if on_layer is not None:
            on_layer(records[-1])
    return NetworkRun(values, {k: io[k] for k in net.outputs}, records)


def _host_step(compiled: CompiledNetwork, s: HostStep, values: dict, io: dict, mem: np.ndarray) -> dict:
    """Run a host step, write the tensors it makes into `mem`; its record."""
    t0 = time.perf_counter()
    s.fn(values, io)
    for name in s.outputs:
        if name in compiled.regions:
            compiled.regions[name].write(mem, values[name].reshape(-1, values[name].shape[-1]))
    return {"name": s.name, "op": s.op, "where": "host", "unit": None, "cycles": None, "macs": 0,
            "passes": 0, "instructions": 0, "note": s.note, "wall_s": time.perf_counter() - t0}


def _layer_record(s: CompiledLayer, cycles: int | None, counters: dict, wall_s: float,
                  instructions: int | None = None) -> dict:
    return {"name": s.name, "op": s.layer.op, "where": "accelerator", "unit": s.layer.unit,
            "cycles": cycles, "macs": s.layer.macs, "passes": len(s.layer.ops),
            "instructions": len(s.words) if instructions is None else instructions,
            "predicted_cycles": s.predicted, "note": s.layer.note, "counters": counters, "wall_s": wall_s}


def _fused_run(compiled: CompiledNetwork, inputs: dict[str, np.ndarray], sim: str, *,
               on_layer=None, max_cycles: int | None = None) -> NetworkRun:
    """`run_network` as one program (`CompiledNetwork.fused_program`)."""
    net = compiled.net
    values: dict[str, np.ndarray] = {}
    io = dict(inputs)
    mem = compiled.image.copy()
    records = []
    layers = compiled.layers
    first = compiled.steps.index(layers[0])
    last = compiled.steps.index(layers[-1])
    for s in compiled.steps[:first]:
        records.append(_host_step(compiled, s, values, io, mem))
        if on_layer is not None:
            on_layer(records[-1])
    t0 = time.perf_counter()
    prog = compiled.fused_program(memory=mem)
    if max_cycles is None and sim in ("rtl", "verilator"):
        # a hang is caught, not a long network: the RTL's bound per program scaled to this one
        max_cycles = max(DEFAULT_MAX_CYCLES, 4 * sum(s.predicted for s in layers))
    out = run_program(compiled.cfg.sized_for(len(prog.image)), prog, sim, max_cycles=max_cycles)
    wall = time.perf_counter() - t0
    cycles = (compiled.layer_cycles(out.memory, out.cycles) if out.cycles is not None
              else [None] * len(layers))
    insns = [s.n_instructions for s in layers]
    for s in layers:
        spec = net.tensors[s.layer.output]
        values[spec.name] = compiled.regions[spec.name].read(out.memory).reshape(spec.shape)
    for s in compiled.steps[first:last + 1]:
        if isinstance(s, HostStep):           # no tensors (`can_fuse`): runs after the program
            records.append(_host_step(compiled, s, values, io, out.memory))
        else:
            i = layers.index(s)
            # wall time: the run's, shared out by instructions
            records.append(_layer_record(s, cycles[i], {}, wall * insns[i] / max(1, prog.insn_count),
                                         insns[i]))
        if on_layer is not None:
            on_layer(records[-1])
    for s in compiled.steps[last + 1:]:
        records.append(_host_step(compiled, s, values, io, out.memory))
        if on_layer is not None:
            on_layer(records[-1])
    return NetworkRun(values, {k: io[k] for k in net.outputs}, records, counters=dict(out.counters),
                      fused=True)


def _model_run(compiled: CompiledNetwork, inputs: dict[str, np.ndarray], *, on_layer=None,
               max_cycles: int | None = None, reference_key: tuple | None = None) -> NetworkRun:
    """The fast `--sim model` run of a network compiled without programs: each layer's cycles
    are the performance model's (from its tiling search, `codegen.estimate`), its values
    systolab's numpy reference of the network (which the functional simulator and the RTL
    equal bit for bit: tests/test_network.py, tests/test_vector_cnn.py). `reference_key`
    identifies the model and inputs: the reference is then computed once per process for each
    choice of units (array or vector) of its layers."""
    t0 = time.perf_counter()
    key = reference_key and (*reference_key, tuple(layer.unit for layer in compiled.net.layers))
    values, outputs = map(dict, _REFERENCES.get(key, lambda: network_reference(compiled.net, inputs)))
    ref_s = time.perf_counter() - t0
    records, used = [], 0
    for s in compiled.steps:
        if isinstance(s, HostStep):
            rec = {"name": s.name, "op": s.op, "where": "host", "unit": None, "cycles": None, "macs": 0,
                   "passes": 0, "instructions": 0, "note": s.note, "wall_s": 0.0}
        else:
            used += s.predicted
            if max_cycles is not None and used > max_cycles:
                raise LimitError(f"the performance model predicts more than max_cycles ({max_cycles:,}) "
                                 f"by layer {s.name!r}")
            rec = {"name": s.name, "op": s.layer.op, "where": "accelerator", "unit": s.layer.unit,
                   "cycles": s.predicted, "macs": s.layer.macs, "passes": len(s.layer.ops),
                   "instructions": s.n_instructions, "predicted_cycles": s.predicted,
                   "note": s.layer.note, "counters": {"cycles": s.predicted, **s.counters}, "wall_s": 0.0}
        records.append(rec)
        if on_layer is not None:
            on_layer(rec)
    return NetworkRun(values, outputs, records, ref_s)


def _run_counters(run: NetworkRun) -> dict[str, int]:
    """The hardware (or model) counters of a run: the one program's, or added up over the
    layers' programs."""
    if run.counters is not None:
        return dict(run.counters)
    out: dict[str, int] = {}
    for layer in run.layers:
        for k, v in (layer.get("counters") or {}).items():
            if isinstance(v, (int, np.integer)):
                out[k] = out.get(k, 0) + int(v)
    return out


def _instructions(compiled: CompiledNetwork, run: NetworkRun) -> int:
    """Instructions the run executed (the fused program's, or the layers' programs')."""
    return (sum(r["instructions"] for r in run.layers) if run.fused
            else sum(c.n_instructions for c in compiled.layers))


def _diff_lsb(net, name: str, ours, theirs) -> np.ndarray:
    """ours - theirs in steps of the output's quantization (the quantized values are compared)."""
    spec_name, dequantized = net.output_tensors[name]
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    if dequantized:
        q = net.qparams[spec_name]
        ours = np.rint(ours.astype(np.float64) / q.scale)
        theirs = np.rint(theirs.astype(np.float64) / q.scale)
    return ours.astype(np.int64) - theirs.astype(np.int64)


def check_model_inputs(net, inputs: dict[str, np.ndarray], source: str = "--input", *,
                       dtype: str = "float32") -> dict[str, np.ndarray]:
    """The inputs as arrays, each present and of `dtype` (a quantized ONNX model takes float32
    inputs, which its QuantizeLinear turns into int8); a `UserError` naming the input otherwise,
    before anything is compiled. Shapes are checked by the importer against the model's."""
    out = {}
    for name in net.inputs:
        if name not in inputs:
            raise UserError(f"{source}: no value for the model input {name!r} (inputs: {', '.join(net.inputs)})")
        v = np.asarray(inputs[name])
        if v.dtype != np.dtype(dtype):
            raise UserError(f"{source}: input {name!r} has dtype {v.dtype}; the model takes {dtype} "
                            f"(save it with x.astype(np.{dtype}))")
        out[name] = v
    return out


def run_onnx(config, model: str | Path, inputs: dict[str, np.ndarray], sim: str, *,
             im2col: str = "auto", compare_ort: bool = True, on_layer=None,
             max_cycles: int | None = None, vector: str = "auto") -> tuple[RunReport, dict]:
    """Import, compile and run a quantized ONNX model; check it against systolab's numpy reference
    (bit-exact) and ONNX Runtime (within 1 LSB; a network with integer vector kernels: each
    operator within 2 LSB given ONNX Runtime's inputs, `ort["layer_max_lsb"]`). `vector`: which
    layers run on the vector unit (`compile_network`).

    Returns (the report, the model's outputs by name).
    """
    check_sim(sim)
    t0 = time.perf_counter()
    net = _load_onnx(model)
    inputs = check_model_inputs(net, inputs)
    net = _load_onnx(model, input_shapes={k: tuple(v.shape) for k, v in inputs.items()})
    import_s = time.perf_counter() - t0
    compiled = compile_network(config, net, im2col=im2col, vector=vector, programs=sim != "model")
    key = _model_key(model, inputs)
    run = run_network(compiled, inputs, sim, on_layer=on_layer, max_cycles=max_cycles, reference_key=key)
    mismatches, first_bad, ref_s = _check_network(compiled, run, inputs)
    ort = None
    if compare_ort:
        t2 = time.perf_counter()
        theirs, their_values = _ORT_TENSORS.get(key, lambda: ort_tensors(model, net, inputs))
        ort = {"max_diff_lsb": 0, "off_by_one": 0, "elements": 0, "ort_s": time.perf_counter() - t2}
        _layer_ort_agreement(compiled, run, their_values)
        for name in net.outputs:
            d = np.abs(_diff_lsb(net, name, run.outputs[name], theirs[name]))
            ort["max_diff_lsb"] = max(ort["max_diff_lsb"], int(d.max(initial=0)))
            ort["off_by_one"] += int(np.count_nonzero(d == 1))
            ort["elements"] += int(d.size)
        if any(hasattr(op, "emit") for layer in net.layers for op in layer.ops):
            # integer kernels (softmax, LayerNorm, GELU) drift through a deep layer: each operator
            # is judged on ONNX Runtime's own inputs (codegen.transformer.layer_agreement)
            ort["layer_max_lsb"] = max(layer_agreement(net, their_values).values(), default=0)
    _layer_metrics(config, run)
    ok = mismatches == 0 and (ort is None or ort["max_diff_lsb"] <= 1 or ort.get("layer_max_lsb", 3) <= 2)
    report = RunReport.of(
        config, macs=net.macs, cycles=run.cycles, mismatches=mismatches, ok=ok, sim=sim,
        model=str(model), workload=f"onnx:{Path(model).name}", first_mismatch=first_bad, ort=ort,
        instructions=_instructions(compiled, run), counters=_run_counters(run),
        layers=run.layers, extra={"memory_bytes": compiled.mem_needed},
        timings={"import_s": import_s, "compile_s": compiled.compile_s,
                 "sim_s": sum(r["wall_s"] for r in run.layers), "reference_s": ref_s})
    return report, run.outputs


def _layer_ort_agreement(compiled: CompiledNetwork, run: NetworkRun, theirs: dict[str, np.ndarray]) -> None:
    """Each accelerator layer's record gets `ort_max_lsb` and `ort_off_by_one`: how its output
    tensor compares with ONNX Runtime's value of the same tensor (None when ORT has none)."""
    outputs = {s.name: s.layer.output for s in compiled.layers}
    for rec in run.layers:
        name = outputs.get(rec["name"]) if rec["where"] == "accelerator" else None
        if name not in theirs:
            rec.update(ort_max_lsb=None, ort_off_by_one=None)
            continue
        d = np.abs(run.values[name].astype(np.int16) - theirs[name].astype(np.int16))
        rec.update(ort_max_lsb=int(d.max(initial=0)), ort_off_by_one=int(np.count_nonzero(d == 1)))


def _check_network(compiled: CompiledNetwork, run: NetworkRun, inputs) -> tuple[int, str | None, float]:
    """Compare a run with systolab's numpy reference of the network, layer by layer (each record
    gets its `mismatches`) and at the outputs: (mismatches, first layer that differs, reference_s)."""
    if run.reference_s is not None:      # the run's values are the reference (`_model_run`)
        return 0, None, run.reference_s
    t1 = time.perf_counter()
    ref_values, ref_outputs = network_reference(compiled.net, inputs)
    ref_s = time.perf_counter() - t1
    mismatches = 0
    first_bad = None
    for rec in run.layers:
        if rec["where"] != "accelerator":
            continue
        name = next(s.layer.output for s in compiled.layers if s.name == rec["name"])
        bad = int(np.count_nonzero(run.values[name] != ref_values[name]))
        rec["mismatches"] = bad
        mismatches += bad
        if bad and first_bad is None:
            first_bad = rec["name"]
    for name in compiled.net.outputs:
        mismatches += int(np.count_nonzero(np.asarray(run.outputs[name]) != np.asarray(ref_outputs[name])))
    return mismatches, first_bad, ref_s


def _layer_metrics(config, run: NetworkRun) -> None:
    for rec in run.layers:      # the same keys for every layer; a host step has no cycles
        rec.update(cycle_metrics(rec["macs"], config, rec["cycles"]))
        rec.setdefault("counters", {})


def run_mlir(config, model: str | Path, inputs: dict[str, np.ndarray] | None, sim: str, *,
             im2col: str = "auto", seed: int = 0, on_layer=None, on_compiled=None,
             max_cycles: int | None = None) -> tuple[RunReport, dict]:
    """Import, compile and run an integer linalg MLIR program (`codegen.mlir_import`); check it
    bit-exact against systolab's numpy reference (there is no second runtime to compare with).
    `inputs` None: random int8 inputs from `seed`. `on_compiled(compiled)` sees the compiled
    network before it runs (`--emit-mlir`).

    Returns (the report, the program's outputs by name)."""
    check_sim(sim)
    t0 = time.perf_counter()
    net = load_mlir(model)
    inputs = generated_mlir_inputs(net, seed) if inputs is None else check_model_inputs(net, inputs, dtype="int8")
    import_s = time.perf_counter() - t0
    compiled = compile_network(config, net, im2col=im2col)
    if on_compiled is not None:
        on_compiled(compiled)
    run = run_network(compiled, inputs, sim, on_layer=on_layer, max_cycles=max_cycles)
    mismatches, first_bad, ref_s = _check_network(compiled, run, inputs)
    _layer_metrics(config, run)
    report = RunReport.of(
        config, macs=net.macs, cycles=run.cycles, mismatches=mismatches, sim=sim, model=str(model),
        workload=f"mlir:{Path(model).name}", first_mismatch=first_bad,
        instructions=_instructions(compiled, run), counters=_run_counters(run),
        layers=run.layers, extra={"memory_bytes": compiled.mem_needed},
        timings={"import_s": import_s, "compile_s": compiled.compile_s,
                 "sim_s": sum(r["wall_s"] for r in run.layers), "reference_s": ref_s})
    return report, run.outputs


def run_mlir_workload(config, model: str | Path, sim: str, *, seed: int = 0,
                      max_cycles: int | None = None) -> RunReport:
    """`run_mlir` on generated inputs: a sweep workload `{name: ..., mlir: path}`."""
    report, _ = run_mlir(config, model, None, sim, seed=seed, max_cycles=max_cycles)
    report.workload = f"mlir:{model}"
    return report


def run_onnx_workload(config, model: str | Path, sim: str, *, seed: int = 0,
                      max_cycles: int | None = None) -> RunReport:
    """`run_onnx` on generated inputs (`generated_inputs(model, seed)`): a sweep workload
    `{name: ..., onnx: path}`, with the per-layer breakdown in `layers`."""
    report, _ = run_onnx(config, model, generated_inputs(model, seed), sim, max_cycles=max_cycles)
    report.workload = f"onnx:{model}"
    return report
