"""What the pages show, as plain JSON: a config's derived facts, a compiled workload (listing,
memory map, tilings scored by the performance model, per-layer cycles) and the queues over time.

Everything here reads the objects the rest of systolab defines (`HardwareConfig`, `ISA`,
`Program`, `PerfModel`); nothing is recomputed by hand.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from systolab.isa import QUEUES, TOKEN_FLAGS, WORD_BITS, isa_for
from systolab.metrics import cycle_metrics

__all__ = ["config_facts", "Compiled", "compile_gemm_view", "compile_model_view", "listing",
           "model_timeline", "workload_hash", "MAX_BARS"]

#: most instructions drawn on a Gantt chart (a longer program shows its first MAX_BARS)
MAX_BARS = 20_000


def config_facts(cfg) -> dict:
    """The derived facts of a config: PEs, buffer bytes, the instruction field widths."""
    isa = isa_for(cfg)
    return {
        "hash": cfg.hash,
        "describe": cfg.describe(),
        "config": cfg.to_dict(),
        "pes": cfg.pes,
        "rows": cfg.rows, "cols": cfg.cols,
        "scratchpad_bytes": cfg.scratchpad.depth * cfg.sp_row_bytes,
        "accumulator_bytes": cfg.accumulator.depth * cfg.acc_row_bytes,
        "memory_bytes": cfg.mem_bytes,
        "bus_bytes": cfg.memory.bus_bytes,
        "queue_depth": cfg.queues.depth,
        "word_bits": WORD_BITS,
        "widths": dict(isa.widths),
        "instructions": [
            {"name": f.name, "opcode": f.opcode, "queue": f.queue, "used_bits": f.used_bits,
             "fields": [{"name": x.name, "width": x.width, "bits": x.bits} for x in f.fields]}
            for f in isa.formats.values()],
    }


def workload_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Compiled:
    """A compiled workload: one program per accelerator layer (a GEMM is one layer)."""

    id: str
    cfg: object
    workload: str
    programs: list                       # Program per accelerator layer
    summary: dict = field(default_factory=dict)

    def program(self, layer: int):
        from .safety import WebError
        if not isinstance(layer, int) or not 0 <= layer < len(self.programs):
            raise WebError(404, f"layer {layer!r}: the program has accelerator layers 0 to "
                                f"{len(self.programs) - 1}")
        return self.programs[layer]


def _memory_map(cfg, program) -> list[dict]:
    rows = [{"name": "instructions", "addr": program.insn_addr, "bytes": program.insn_count * cfg.insn_bytes,
             "shape": [program.insn_count, cfg.insn_bytes], "dtype": f"{WORD_BITS}-bit words",
             "row_stride": cfg.insn_bytes, "output": False}]
    for r in program.regions.values():
        rows.append({"name": r.name, "addr": r.addr, "bytes": r.nbytes, "shape": list(r.shape),
                     "dtype": r.dtype, "row_stride": r.row_stride, "output": r.name in program.outputs})
    return sorted(rows, key=lambda r: (r["addr"], r["name"]))


def _queue_counts(cfg, program) -> dict:
    isa = isa_for(cfg)
    counts = {q: 0 for q in QUEUES}
    for w in program.words:
        counts[isa.formats[isa.decode(w).op].queue] += 1
    return counts


def compile_gemm_view(cfg, workload: str, *, seed: int = 0) -> Compiled:
    """Compile `gemm:MxKxN` as `systolab run` does (same operands for the same seed), score every
    candidate tiling with the performance model, predict the program's cycles."""
    from systolab.codegen.gemm import candidate_tilings, compile_gemm, random_gemm, tiling_cycles
    from systolab.perf import PerfModel
    from systolab.sim.run import parse_gemm

    M, K, N = parse_gemm(workload)
    t0 = time.perf_counter()
    program = compile_gemm(cfg, random_gemm(M, K, N, seed=seed), name=workload)
    compile_s = time.perf_counter() - t0
    model = PerfModel(cfg)
    pred = model.predict(program)
    chosen = program.meta["tiling"]
    alternatives = []
    for t in candidate_tilings(cfg, (M, K, N)):
        alternatives.append({**t.to_json(),
                             "cycles": tiling_cycles(cfg, (M, K, N), t, model=model),
                             "chosen": t.to_json() == {"group": 0, **chosen}})
    alternatives.sort(key=lambda a: a["cycles"])
    layer = {"index": 0, "name": workload, "op": "GEMM", "where": "accelerator",
             "instructions": program.insn_count, "queues": _queue_counts(cfg, program),
             "tiling": [{"pass": workload, **chosen}], "alternatives": alternatives,
             **cycle_metrics(program.macs, cfg, pred.cycles)}
    key = f"{cfg.hash}-{workload_hash(f'{workload} seed={seed}')}"
    summary = {
        "id": key, "kind": "gemm", "workload": workload, "seed": seed, "config_hash": cfg.hash,
        "config": cfg.source, "describe": cfg.describe(),
        **cycle_metrics(program.macs, cfg, pred.cycles),
        "instructions": program.insn_count,
        "busy": {**pred.busy, "array": pred.array_busy},
        "layers": [layer], "host_steps": [],
        "memory_map": _memory_map(cfg, program),
        "timings": {"compile_s": compile_s},
    }
    return Compiled(key, cfg, workload, [program], summary)


def compile_model_view(cfg, model: Path, display: str, *, seed: int = 0) -> Compiled:
    """Import and compile a quantized ONNX model (input shapes from its generated inputs, as a
    sweep runs it); per accelerator layer: its tilings and the cycles the model predicts."""
    from systolab.codegen.network import CompiledLayer, compile_network
    from systolab.codegen.onnx_import import generated_inputs, load_onnx

    t0 = time.perf_counter()
    load_onnx(model)                      # a file that is not a supported model fails here, in one line
    shapes = {k: tuple(v.shape) for k, v in generated_inputs(model, seed).items()}
    net = load_onnx(model, input_shapes=shapes)
    compiled = compile_network(cfg, net)
    compile_s = time.perf_counter() - t0
    programs, layers, host = [], [], []
    for step in compiled.steps:
        if not isinstance(step, CompiledLayer):
            host.append({"name": step.name, "op": step.op, "where": "host", "note": step.note})
            continue
        prog = compiled.program(step)
        layers.append({"index": len(programs), "name": step.name, "op": step.op, "where": "accelerator",
                       "instructions": len(step.words), "queues": _queue_counts(cfg, prog),
                       "tiling": step.tilings, "alternatives": [],
                       **cycle_metrics(step.layer.macs, cfg, step.predicted)})
        programs.append(prog)
    digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()[:16]
    key = f"{cfg.hash}-{workload_hash(f'onnx:{digest} seed={seed}')}"
    total = sum(layer["cycles"] for layer in layers)
    summary = {
        "id": key, "kind": "onnx", "workload": f"onnx:{Path(display).name}", "model": display,
        "seed": seed, "config_hash": cfg.hash, "config": cfg.source, "describe": cfg.describe(),
        **cycle_metrics(net.macs, cfg, total),
        "instructions": sum(layer["instructions"] for layer in layers),
        "layers": layers, "host_steps": host,
        "memory_map": _memory_map(cfg, programs[0]) if programs else [],
        "timings": {"compile_s": compile_s},
    }
    return Compiled(key, cfg, summary["workload"], programs, summary)


def listing(cfg, program, offset: int = 0, limit: int = 500) -> dict:
    """The program as assembly: per instruction its queue, token flags, operands and text."""
    isa = isa_for(cfg)
    words = program.words[offset:offset + limit]
    out = []
    for i, w in enumerate(words, offset):
        insn = isa.decode(w)
        fmt = isa.formats[insn.op]
        out.append({"index": i, "queue": fmt.queue, "op": insn.op,
                    "tokens": [t for t in TOKEN_FLAGS if insn.values[t]],
                    "operands": {f.name: insn.values[f.name] for f in fmt.fields},
                    "text": isa.disassemble_one(w), "word": f"{w:#0{WORD_BITS // 4 + 2}x}"})
    return {"offset": offset, "total": program.insn_count, "instructions": out}


def model_timeline(cfg, program) -> dict:
    """Per instruction (queue, index, op, start, end) as the performance model places it."""
    from systolab.perf import PerfModel

    record: list = []
    pred = PerfModel(cfg).predict(program, record=record)
    return {"source": "model", "cycles": pred.cycles, "queues": list(QUEUES),
            "busy": {**pred.busy, "array": pred.array_busy},
            "truncated": len(record) > MAX_BARS,
            "bars": [list(r) for r in record[:MAX_BARS]]}


def summary_json(c: Compiled) -> str:
    return json.dumps(c.summary)
