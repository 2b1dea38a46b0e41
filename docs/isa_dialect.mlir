// The systolab dialect: generated from isa/spec.yaml by systolab.isa.mlir; do not edit.
// Field types are for configs/default.yaml (8x8 array, scratchpad 4096 rows, accumulator 1024 rows, bus 16 B/cycle, latency 32, config 99391cb13444).
// Tokens: !systolab.token<load, compute> (push_next on load, pop_prev on compute), !systolab.token<compute, load> (push_prev on compute, pop_next on load), !systolab.token<compute, store> (push_next on compute, pop_prev on store), !systolab.token<store, compute> (push_prev on store, pop_next on compute)
//
// systolab.load (load queue, opcode 1): dram_addr: ui32, dram_stride: ui24, rows: ui13, sp_addr: ui12; tokens: pop_next, push_next
// systolab.preload (compute queue, opcode 2): sp_addr: ui12, wbuf: ui1; tokens: pop_prev, pop_next, push_prev, push_next
// systolab.matmul (compute queue, opcode 3): sp_addr: ui12, acc_addr: ui10, rows: ui11, wbuf: ui1, accumulate: ui1; tokens: pop_prev, pop_next, push_prev, push_next
// systolab.store (store queue, opcode 4): dram_addr: ui32, dram_stride: ui24, rows: ui11, acc_addr: ui10, param_addr: ui32, relu: ui1, round_even: ui1, fp32: ui1; tokens: pop_prev, push_prev
// systolab.sync (compute queue, opcode 5): (no fields); tokens: pop_prev, pop_next, push_prev, push_next
// systolab.vector (compute queue, opcode 6): func: ui5, accumulate: ui1, dst: ui10, src1: ui12, src1_sp: ui1, src1_stride: ui1, src2: ui32, src2_sp: ui1, src2_stride: ui1, src2_imm: ui1, rows: ui11, shift: ui6, round: ui1; tokens: pop_prev, pop_next, push_prev, push_next
// systolab.stamp (store queue, opcode 7): dram_addr: ui32; tokens: pop_prev, push_prev
builtin.module attributes {systolab.config_hash = "f784420e2283", systolab.config = "configs/default.yaml"} {
  %lc0 = systolab.load {dram_addr = 0 : ui32, dram_stride = 0 : ui24, rows = 1 : ui13, sp_addr = 0 : ui12} push_next
  %cl1 = systolab.preload pop_prev(%lc0) {sp_addr = 0 : ui12, wbuf = 0 : ui1} push_prev
  %lc2 = systolab.load pop_next(%cl1) {dram_addr = 0 : ui32, dram_stride = 0 : ui24, rows = 1 : ui13, sp_addr = 0 : ui12} push_next
  %cs3 = systolab.matmul pop_prev(%lc2) {sp_addr = 0 : ui12, acc_addr = 0 : ui10, rows = 1 : ui11, wbuf = 0 : ui1, accumulate = 0 : ui1} push_next
  %sc4 = systolab.store pop_prev(%cs3) {dram_addr = 0 : ui32, dram_stride = 0 : ui24, rows = 1 : ui11, acc_addr = 0 : ui10, param_addr = 0 : ui32, relu = 0 : ui1, round_even = 0 : ui1, fp32 = 0 : ui1} push_prev
  %cl5 = systolab.sync pop_next(%sc4) push_prev
  systolab.load pop_next(%cl5) {dram_addr = 0 : ui32, dram_stride = 0 : ui24, rows = 1 : ui13, sp_addr = 0 : ui12}
}
