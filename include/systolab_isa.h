/* systolab ISA: generated from isa/spec.yaml by systolab.isa.docs; do not edit. */
/* config configs/default.yaml: 8x8 array, scratchpad 4096 rows, accumulator 1024 rows, bus 16 B/cycle, latency 32; hash 30b3c36ee9eb */
#ifndef SYSTOLAB_ISA_H
#define SYSTOLAB_ISA_H

#include <stdint.h>

#define SYSTOLAB_CONFIG_HASH "30b3c36ee9eb"
#define SYSTOLAB_ARRAY_ROWS 8
#define SYSTOLAB_ARRAY_COLS 8
#define SYSTOLAB_SCRATCHPAD_DEPTH 4096
#define SYSTOLAB_ACCUMULATOR_DEPTH 1024
#define SYSTOLAB_BUS_BYTES 16
#define SYSTOLAB_INSN_BITS 128
#define SYSTOLAB_INSN_WORDS32 4

/* An instruction: 32-bit words, word 0 holds bits 31..0. */
typedef struct { uint32_t w[4]; } systolab_insn_t;

/* Set `width` bits at bit `lsb` (fields may straddle 32-bit words). */
static inline void systolab_set_field(systolab_insn_t *insn, unsigned lsb, unsigned width, uint64_t value) {
    for (unsigned i = 0; i < width; i++) {
        unsigned bit = lsb + i;
        uint32_t mask = 1u << (bit % 32);
        if ((value >> i) & 1) insn->w[bit / 32] |= mask; else insn->w[bit / 32] &= ~mask;
    }
}

static inline uint64_t systolab_get_field(const systolab_insn_t *insn, unsigned lsb, unsigned width) {
    uint64_t value = 0;
    for (unsigned i = 0; i < width; i++) {
        unsigned bit = lsb + i;
        value |= (uint64_t)((insn->w[bit / 32] >> (bit % 32)) & 1) << i;
    }
    return value;
}

#define SYSTOLAB_OPCODE_LSB 0
#define SYSTOLAB_OPCODE_WIDTH 3
#define SYSTOLAB_POP_PREV_LSB 3
#define SYSTOLAB_POP_PREV_WIDTH 1
#define SYSTOLAB_POP_NEXT_LSB 4
#define SYSTOLAB_POP_NEXT_WIDTH 1
#define SYSTOLAB_PUSH_PREV_LSB 5
#define SYSTOLAB_PUSH_PREV_WIDTH 1
#define SYSTOLAB_PUSH_NEXT_LSB 6
#define SYSTOLAB_PUSH_NEXT_WIDTH 1

/* LOAD: load queue */
#define SYSTOLAB_OP_LOAD 1
#define SYSTOLAB_LOAD_DRAM_ADDR_LSB 7
#define SYSTOLAB_LOAD_DRAM_ADDR_WIDTH 32
#define SYSTOLAB_LOAD_DRAM_STRIDE_LSB 39
#define SYSTOLAB_LOAD_DRAM_STRIDE_WIDTH 24
#define SYSTOLAB_LOAD_ROWS_LSB 63
#define SYSTOLAB_LOAD_ROWS_WIDTH 13
#define SYSTOLAB_LOAD_SP_ADDR_LSB 76
#define SYSTOLAB_LOAD_SP_ADDR_WIDTH 12

/* PRELOAD: compute queue */
#define SYSTOLAB_OP_PRELOAD 2
#define SYSTOLAB_PRELOAD_SP_ADDR_LSB 7
#define SYSTOLAB_PRELOAD_SP_ADDR_WIDTH 12
#define SYSTOLAB_PRELOAD_WBUF_LSB 19
#define SYSTOLAB_PRELOAD_WBUF_WIDTH 1

/* MATMUL: compute queue */
#define SYSTOLAB_OP_MATMUL 3
#define SYSTOLAB_MATMUL_SP_ADDR_LSB 7
#define SYSTOLAB_MATMUL_SP_ADDR_WIDTH 12
#define SYSTOLAB_MATMUL_ACC_ADDR_LSB 19
#define SYSTOLAB_MATMUL_ACC_ADDR_WIDTH 10
#define SYSTOLAB_MATMUL_ROWS_LSB 29
#define SYSTOLAB_MATMUL_ROWS_WIDTH 11
#define SYSTOLAB_MATMUL_WBUF_LSB 40
#define SYSTOLAB_MATMUL_WBUF_WIDTH 1
#define SYSTOLAB_MATMUL_ACCUMULATE_LSB 41
#define SYSTOLAB_MATMUL_ACCUMULATE_WIDTH 1

/* STORE: store queue */
#define SYSTOLAB_OP_STORE 4
#define SYSTOLAB_STORE_DRAM_ADDR_LSB 7
#define SYSTOLAB_STORE_DRAM_ADDR_WIDTH 32
#define SYSTOLAB_STORE_DRAM_STRIDE_LSB 39
#define SYSTOLAB_STORE_DRAM_STRIDE_WIDTH 24
#define SYSTOLAB_STORE_ROWS_LSB 63
#define SYSTOLAB_STORE_ROWS_WIDTH 11
#define SYSTOLAB_STORE_ACC_ADDR_LSB 74
#define SYSTOLAB_STORE_ACC_ADDR_WIDTH 10
#define SYSTOLAB_STORE_PARAM_ADDR_LSB 84
#define SYSTOLAB_STORE_PARAM_ADDR_WIDTH 32
#define SYSTOLAB_STORE_RELU_LSB 116
#define SYSTOLAB_STORE_RELU_WIDTH 1
#define SYSTOLAB_STORE_ROUND_EVEN_LSB 117
#define SYSTOLAB_STORE_ROUND_EVEN_WIDTH 1

/* SYNC: compute queue */
#define SYSTOLAB_OP_SYNC 5

#endif /* SYSTOLAB_ISA_H */
