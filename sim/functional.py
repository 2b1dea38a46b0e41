"""The functional ISA simulator: numpy, bit-exact, the golden model for the RTL.

It executes a program one instruction at a time in program order, which is what the decoupled
hardware computes when the program's dependency tokens are right. It checks what the hardware
cannot: a pop from an empty token counter ("token underflow": the program would deadlock or race
on the hardware), buffer addresses out of range, misaligned external-memory accesses.

The dispatch table comes from the ISA spec: every instruction `X` in `isa/spec.yaml` is executed
by the method `_exec_X`; a spec instruction without one is an error when the simulator is built.

    >>> sim = FunctionalSim(cfg)
    >>> result = sim.run(program)       # a codegen.Program
    >>> result.outputs["C"]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from systolab.codegen.program import Program
from systolab.codegen.intops import COLUMN_REDUCTIONS, combine, vector_op
from systolab.codegen.quant import requantize, wrap_int32
from systolab.errors import UserError
from systolab.isa import ENUMS, QUEUES, Instruction, isa_for

__all__ = ["FunctionalSim", "FuncResult", "SimError"]


class SimError(UserError):
    """The program does something the hardware would get wrong (or hang on)."""


#: token counters between neighbouring queues, named (from, to)
TOKEN_LINKS = [(a, b) for a, b in zip(QUEUES, QUEUES[1:])] + [(b, a) for a, b in zip(QUEUES, QUEUES[1:])]


@dataclass
class FuncResult:
    memory: np.ndarray                   # external memory after the run (uint8)
    outputs: dict[str, np.ndarray]       # the program's output regions
    insn_counts: dict[str, int] = field(default_factory=dict)
    matmul_rows: int = 0                 # rows streamed through the array (= hardware array_busy)
    vector_rows: int = 0                 # rows the vector unit produced or reduced


class FunctionalSim:
    def __init__(self, config):
        self.cfg = config
        self.isa = isa_for(config)
        self.dispatch = {}
        for name, fmt in self.isa.formats.items():
            handler = getattr(self, f"_exec_{name}", None)
            if handler is None:
                raise NotImplementedError(f"sim/functional.py has no handler for ISA instruction {name}")
            self.dispatch[name] = handler

    # -- state ----------------------------------------------------------------------------------
    def reset(self, memory: np.ndarray) -> None:
        cfg = self.cfg
        self.mem = memory
        self.sp = np.zeros((cfg.scratchpad.depth, cfg.rows), dtype=np.int8)
        self.acc = np.zeros((cfg.accumulator.depth, cfg.cols), dtype=np.int32)
        self.wbuf = np.zeros((2, cfg.rows, cfg.cols), dtype=np.int8)
        self.tokens = {link: 0 for link in TOKEN_LINKS}
        self.matmul_rows = 0
        self.vector_rows = 0

    def run(self, program: Program) -> FuncResult:
        mem = program.memory(self.cfg)
        self.reset(mem)
        counts = {name: 0 for name in self.isa.formats}
        for pc, word in enumerate(program.words):
            insn = self.isa.decode(word)
            try:
                self.step(insn)
            except SimError as e:
                raise SimError(f"instruction {pc} ({self.isa.disassemble_one(word)}): {e}") from None
            counts[insn.op] += 1
        return FuncResult(self.mem, program.read_outputs(self.mem), counts, self.matmul_rows,
                          self.vector_rows)

    def step(self, insn: Instruction) -> None:
        queue = self.isa.formats[insn.op].queue
        i = QUEUES.index(queue)
        prev = QUEUES[i - 1] if i > 0 else None
        nxt = QUEUES[i + 1] if i + 1 < len(QUEUES) else None
        for flag, other in (("pop_prev", prev), ("pop_next", nxt)):
            if getattr(insn, flag):
                if self.tokens[(other, queue)] == 0:
                    raise SimError(f"token underflow: {flag} with no token from the {other} queue")
                self.tokens[(other, queue)] -= 1
        self.dispatch[insn.op](insn)
        for flag, other in (("push_prev", prev), ("push_next", nxt)):
            if getattr(insn, flag):
                self.tokens[(queue, other)] += 1

    # -- helpers --------------------------------------------------------------------------------
    def _rows(self, what: str, base: int, rows: int, depth: int) -> slice:
        if base + rows > depth:
            raise SimError(f"{what} rows {base}..{base + rows - 1} exceed its depth {depth}")
        return slice(base, base + rows)

    def _dram_rows(self, addr: int, stride: int, rows: int, row_bytes: int) -> np.ndarray:
        """Byte offsets (rows, row_bytes) of a 2-D strided external-memory access."""
        align = min(row_bytes, self.cfg.memory.bus_bytes)
        if addr % align or stride % align:
            raise SimError(f"external address {addr:#x} / stride {stride} must be multiples of {align}")
        last = addr + (rows - 1) * stride + row_bytes
        if last > len(self.mem):
            raise SimError(f"external access up to {last:#x} is beyond memory ({len(self.mem):#x} bytes)")
        return addr + np.arange(rows)[:, None] * stride + np.arange(row_bytes)[None, :]

    # -- instructions (one method per spec instruction) -----------------------------------------
    def _exec_LOAD(self, insn: Instruction) -> None:
        cfg = self.cfg
        dst = self._rows("scratchpad", insn.sp_addr, insn.rows, cfg.scratchpad.depth)
        idx = self._dram_rows(insn.dram_addr, insn.dram_stride, insn.rows, cfg.sp_row_bytes)
        self.sp[dst] = self.mem[idx].view(np.int8)

    def _exec_PRELOAD(self, insn: Instruction) -> None:
        src = self._rows("scratchpad", insn.sp_addr, self.cfg.cols, self.cfg.scratchpad.depth)
        self.wbuf[insn.wbuf] = self.sp[src].T

    def _exec_MATMUL(self, insn: Instruction) -> None:
        cfg = self.cfg
        src = self._rows("scratchpad", insn.sp_addr, insn.rows, cfg.scratchpad.depth)
        dst = self._rows("accumulator", insn.acc_addr, insn.rows, cfg.accumulator.depth)
        y = self.sp[src].astype(np.int64) @ self.wbuf[insn.wbuf].astype(np.int64)
        if insn.accumulate:
            y = y + self.acc[dst]
        self.acc[dst] = wrap_int32(y)
        self.matmul_rows += insn.rows

    def _exec_STORE(self, insn: Instruction) -> None:
        cfg = self.cfg
        src = self._rows("accumulator", insn.acc_addr, insn.rows, cfg.accumulator.depth)
        pidx = self._dram_rows(insn.param_addr, cfg.acc_row_bytes, 4, cfg.acc_row_bytes)
        bias, mult, shift, zp = self.mem[pidx].copy().view("<i4")
        if np.any((shift < 0) | (shift > 63)):
            raise SimError(f"requantization shift must be 0..63, not {shift.tolist()}")
        out = requantize(self.acc[src], bias, mult, shift, zp, bool(insn.relu), bool(insn.round_even),
                         bool(insn.fp32))
        idx = self._dram_rows(insn.dram_addr, insn.dram_stride, insn.rows, cfg.out_row_bytes)
        self.mem[idx] = out.view(np.uint8)

    def _exec_SYNC(self, insn: Instruction) -> None:
        pass

    def _exec_STAMP(self, insn: Instruction) -> None:
        """No clock here: the stamp is 0 (the RTL writes its cycle counter, the model predicts it)."""
        self.mem[self._dram_rows(insn.dram_addr, 0, 1, 4)] = 0

    _VECTOR_FUNCS = {code: name for name, code in ENUMS["vector_ops"].items()}

    def _vector_operand(self, what: str, in_sp: int, base: int, stride: int, rows: int) -> np.ndarray:
        """Operand rows (rows x cols, int64) of a VECTOR: accumulator rows, or scratchpad rows
        sign-extended to int32 lanes (lanes past array.rows read 0)."""
        cfg = self.cfg
        n = rows if stride else 1
        if in_sp:
            src = self.sp[self._rows(f"{what} (scratchpad)", base, n, cfg.scratchpad.depth)]
            rowsv = np.zeros((n, cfg.cols), dtype=np.int64)
            k = min(cfg.rows, cfg.cols)
            rowsv[:, :k] = src[:, :k]
        else:
            rowsv = self.acc[self._rows(f"{what} (accumulator)", base, n, cfg.accumulator.depth)].astype(np.int64)
        return rowsv if stride else np.broadcast_to(rowsv, (rows, cfg.cols))

    def _exec_VECTOR(self, insn: Instruction) -> None:
        cfg = self.cfg
        if not cfg.has_vector:
            raise SimError(f"{cfg.source} has no vector unit (no `vector` section): VECTOR cannot run")
        func = self._VECTOR_FUNCS.get(insn.func)
        if func is None:
            raise SimError(f"VECTOR.func {insn.func} is not a vector operation "
                           f"(valid: {', '.join(f'{c}={n}' for c, n in self._VECTOR_FUNCS.items())})")
        a = self._vector_operand("src1", insn.src1_sp, insn.src1, insn.src1_stride, insn.rows)
        if insn.src2_imm:
            imm = insn.src2 - (1 << 32) if insn.src2 >> 31 else insn.src2
            b = np.full((insn.rows, cfg.cols), imm, dtype=np.int64)
        else:
            b = self._vector_operand("src2", insn.src2_sp, insn.src2, insn.src2_stride, insn.rows)
        out_rows = 1 if func in COLUMN_REDUCTIONS else insn.rows
        for name, in_sp, base, stride in (("src1", insn.src1_sp, insn.src1, insn.src1_stride),
                                          ("src2", insn.src2_sp | insn.src2_imm, insn.src2, insn.src2_stride)):
            n = insn.rows if stride else 1
            in_place = base == insn.dst and stride and out_rows == insn.rows
            if not in_sp and not in_place and base < insn.dst + out_rows and insn.dst < base + n:
                raise SimError(f"VECTOR dst rows {insn.dst}..{insn.dst + out_rows - 1} overlap {name} "
                               f"rows {base}..{base + n - 1} other than in place (dst == {name}, stride 1)")
        y = vector_op(func, a, b, shift=insn.shift, round=insn.round)
        dst = self._rows("VECTOR dst (accumulator)", insn.dst, out_rows, cfg.accumulator.depth)
        self.acc[dst] = combine(func, self.acc[dst], y) if insn.accumulate else y
        self.vector_rows += insn.rows
