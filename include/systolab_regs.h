/* systolab registers: generated from hw/regmap/registers.yaml by systolab.hw.regmap; do not edit. */
#ifndef SYSTOLAB_REGS_H
#define SYSTOLAB_REGS_H

#include <stdint.h>

#define SYSTOLAB_REGMAP_VERSION 1
#define SYSTOLAB_REGMAP_ID 0x534C4142u
#define SYSTOLAB_REGMAP_SIZE 0x100u
#define SYSTOLAB_REGMAP_COUNTERS 12
#define SYSTOLAB_REGMAP_COUNTER_BITS 48

/* The 32-bit register at byte offset `off` from the block base `base`. */
#define SYSTOLAB_REG(base, off) (*(volatile uint32_t *)((uintptr_t)(base) + (off)))

/* Registers: SYSTOLAB_REG_<NAME> is the byte offset; a field is (value & MASK) >> LSB. */

/* ID (RO): Identifies a systolab register block. */
#define SYSTOLAB_REG_ID 0x000u
#define SYSTOLAB_REG_ID_ID_LSB 0
#define SYSTOLAB_REG_ID_ID_WIDTH 32
#define SYSTOLAB_REG_ID_ID_MASK 0xFFFFFFFFu

/* VERSION (RO): Version of this register map; a driver refuses a block with another version. */
#define SYSTOLAB_REG_VERSION 0x004u
#define SYSTOLAB_REG_VERSION_VERSION_LSB 0
#define SYSTOLAB_REG_VERSION_VERSION_WIDTH 16
#define SYSTOLAB_REG_VERSION_VERSION_MASK 0x0000FFFFu

/* CONFIG_HASH (RO): The low 32 bits of the hardware config hash (HardwareConfig.hash, 12 hex digits); a driver refuses a program compiled for another config. */
#define SYSTOLAB_REG_CONFIG_HASH 0x008u
#define SYSTOLAB_REG_CONFIG_HASH_HASH_LO_LSB 0
#define SYSTOLAB_REG_CONFIG_HASH_HASH_LO_WIDTH 32
#define SYSTOLAB_REG_CONFIG_HASH_HASH_LO_MASK 0xFFFFFFFFu

/* ARRAY (RO): Shape of the PE array. */
#define SYSTOLAB_REG_ARRAY 0x00Cu
#define SYSTOLAB_REG_ARRAY_ROWS_LSB 0
#define SYSTOLAB_REG_ARRAY_ROWS_WIDTH 16
#define SYSTOLAB_REG_ARRAY_ROWS_MASK 0x0000FFFFu
#define SYSTOLAB_REG_ARRAY_COLS_LSB 16
#define SYSTOLAB_REG_ARRAY_COLS_WIDTH 16
#define SYSTOLAB_REG_ARRAY_COLS_MASK 0xFFFF0000u

/* SCRATCHPAD_DEPTH (RO): Scratchpad rows. */
#define SYSTOLAB_REG_SCRATCHPAD_DEPTH 0x010u
#define SYSTOLAB_REG_SCRATCHPAD_DEPTH_DEPTH_LSB 0
#define SYSTOLAB_REG_SCRATCHPAD_DEPTH_DEPTH_WIDTH 32
#define SYSTOLAB_REG_SCRATCHPAD_DEPTH_DEPTH_MASK 0xFFFFFFFFu

/* ACCUMULATOR_DEPTH (RO): Accumulator rows. */
#define SYSTOLAB_REG_ACCUMULATOR_DEPTH 0x014u
#define SYSTOLAB_REG_ACCUMULATOR_DEPTH_DEPTH_LSB 0
#define SYSTOLAB_REG_ACCUMULATOR_DEPTH_DEPTH_WIDTH 32
#define SYSTOLAB_REG_ACCUMULATOR_DEPTH_DEPTH_MASK 0xFFFFFFFFu

/* BUS_BYTES (RO): Width of the external memory bus (AXI data width / 8). */
#define SYSTOLAB_REG_BUS_BYTES 0x018u
#define SYSTOLAB_REG_BUS_BYTES_BYTES_LSB 0
#define SYSTOLAB_REG_BUS_BYTES_BYTES_WIDTH 16
#define SYSTOLAB_REG_BUS_BYTES_BYTES_MASK 0x0000FFFFu

/* COUNTER_INFO (RO): How many performance counters follow and how wide each is. */
#define SYSTOLAB_REG_COUNTER_INFO 0x01Cu
#define SYSTOLAB_REG_COUNTER_INFO_COUNT_LSB 0
#define SYSTOLAB_REG_COUNTER_INFO_COUNT_WIDTH 8
#define SYSTOLAB_REG_COUNTER_INFO_COUNT_MASK 0x000000FFu
#define SYSTOLAB_REG_COUNTER_INFO_BITS_LSB 8
#define SYSTOLAB_REG_COUNTER_INFO_BITS_WIDTH 8
#define SYSTOLAB_REG_COUNTER_INFO_BITS_MASK 0x0000FF00u

/* CTRL (WO): Run control. */
#define SYSTOLAB_REG_CTRL 0x020u
#define SYSTOLAB_REG_CTRL_START_LSB 0
#define SYSTOLAB_REG_CTRL_START_WIDTH 1
#define SYSTOLAB_REG_CTRL_START_MASK 0x00000001u

/* STATUS (RO): Run status. */
#define SYSTOLAB_REG_STATUS 0x024u
#define SYSTOLAB_REG_STATUS_BUSY_LSB 0
#define SYSTOLAB_REG_STATUS_BUSY_WIDTH 1
#define SYSTOLAB_REG_STATUS_BUSY_MASK 0x00000001u
#define SYSTOLAB_REG_STATUS_DONE_LSB 1
#define SYSTOLAB_REG_STATUS_DONE_WIDTH 1
#define SYSTOLAB_REG_STATUS_DONE_MASK 0x00000002u
#define SYSTOLAB_REG_STATUS_BUS_ERROR_LSB 2
#define SYSTOLAB_REG_STATUS_BUS_ERROR_WIDTH 1
#define SYSTOLAB_REG_STATUS_BUS_ERROR_MASK 0x00000004u

/* IRQ_ENABLE (RW): Interrupt enables; the interrupt output is high while any enabled IRQ_STATUS bit is set. */
#define SYSTOLAB_REG_IRQ_ENABLE 0x028u
#define SYSTOLAB_REG_IRQ_ENABLE_DONE_LSB 0
#define SYSTOLAB_REG_IRQ_ENABLE_DONE_WIDTH 1
#define SYSTOLAB_REG_IRQ_ENABLE_DONE_MASK 0x00000001u

/* IRQ_STATUS (W1C): Interrupt status (sticky); write 1 to a bit to clear it. */
#define SYSTOLAB_REG_IRQ_STATUS 0x02Cu
#define SYSTOLAB_REG_IRQ_STATUS_DONE_LSB 0
#define SYSTOLAB_REG_IRQ_STATUS_DONE_WIDTH 1
#define SYSTOLAB_REG_IRQ_STATUS_DONE_MASK 0x00000001u

/* INSN_ADDR (RW): Byte address of the first instruction in external memory (the program's insn_addr). */
#define SYSTOLAB_REG_INSN_ADDR 0x030u
#define SYSTOLAB_REG_INSN_ADDR_ADDR_LSB 0
#define SYSTOLAB_REG_INSN_ADDR_ADDR_WIDTH 32
#define SYSTOLAB_REG_INSN_ADDR_ADDR_MASK 0xFFFFFFFFu

/* INSN_COUNT (RW): Number of instructions to run (the program's insn_count). */
#define SYSTOLAB_REG_INSN_COUNT 0x034u
#define SYSTOLAB_REG_INSN_COUNT_COUNT_LSB 0
#define SYSTOLAB_REG_INSN_COUNT_COUNT_WIDTH 32
#define SYSTOLAB_REG_INSN_COUNT_COUNT_MASK 0xFFFFFFFFu

/* CNT_CYCLES_LO (RO): Performance counter cycles (cycles from start to done); reset by start, counts while the core is busy. Bits 31..0. */
#define SYSTOLAB_REG_CNT_CYCLES_LO 0x040u
#define SYSTOLAB_REG_CNT_CYCLES_LO_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_CYCLES_LO_VALUE_WIDTH 32
#define SYSTOLAB_REG_CNT_CYCLES_LO_VALUE_MASK 0xFFFFFFFFu

/* CNT_CYCLES_HI (RO): Performance counter cycles (cycles from start to done); reset by start, counts while the core is busy. Bits 47..32. */
#define SYSTOLAB_REG_CNT_CYCLES_HI 0x044u
#define SYSTOLAB_REG_CNT_CYCLES_HI_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_CYCLES_HI_VALUE_WIDTH 16
#define SYSTOLAB_REG_CNT_CYCLES_HI_VALUE_MASK 0x0000FFFFu

/* CNT_ARRAY_BUSY_LO (RO): Performance counter array_busy (cycles in which an activation row entered the PE array (MAC-active cycles)); reset by start, counts while the core is busy. Bits 31..0. */
#define SYSTOLAB_REG_CNT_ARRAY_BUSY_LO 0x048u
#define SYSTOLAB_REG_CNT_ARRAY_BUSY_LO_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_ARRAY_BUSY_LO_VALUE_WIDTH 32
#define SYSTOLAB_REG_CNT_ARRAY_BUSY_LO_VALUE_MASK 0xFFFFFFFFu

/* CNT_ARRAY_BUSY_HI (RO): Performance counter array_busy (cycles in which an activation row entered the PE array (MAC-active cycles)); reset by start, counts while the core is busy. Bits 47..32. */
#define SYSTOLAB_REG_CNT_ARRAY_BUSY_HI 0x04Cu
#define SYSTOLAB_REG_CNT_ARRAY_BUSY_HI_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_ARRAY_BUSY_HI_VALUE_WIDTH 16
#define SYSTOLAB_REG_CNT_ARRAY_BUSY_HI_VALUE_MASK 0x0000FFFFu

/* CNT_LOAD_BUSY_LO (RO): Performance counter load_busy (cycles the load unit was executing an instruction); reset by start, counts while the core is busy. Bits 31..0. */
#define SYSTOLAB_REG_CNT_LOAD_BUSY_LO 0x050u
#define SYSTOLAB_REG_CNT_LOAD_BUSY_LO_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_LOAD_BUSY_LO_VALUE_WIDTH 32
#define SYSTOLAB_REG_CNT_LOAD_BUSY_LO_VALUE_MASK 0xFFFFFFFFu

/* CNT_LOAD_BUSY_HI (RO): Performance counter load_busy (cycles the load unit was executing an instruction); reset by start, counts while the core is busy. Bits 47..32. */
#define SYSTOLAB_REG_CNT_LOAD_BUSY_HI 0x054u
#define SYSTOLAB_REG_CNT_LOAD_BUSY_HI_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_LOAD_BUSY_HI_VALUE_WIDTH 16
#define SYSTOLAB_REG_CNT_LOAD_BUSY_HI_VALUE_MASK 0x0000FFFFu

/* CNT_COMPUTE_BUSY_LO (RO): Performance counter compute_busy (cycles the compute unit was executing an instruction (PRELOAD, MATMUL streaming or draining, VECTOR)); reset by start, counts while the core is busy. Bits 31..0. */
#define SYSTOLAB_REG_CNT_COMPUTE_BUSY_LO 0x058u
#define SYSTOLAB_REG_CNT_COMPUTE_BUSY_LO_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_COMPUTE_BUSY_LO_VALUE_WIDTH 32
#define SYSTOLAB_REG_CNT_COMPUTE_BUSY_LO_VALUE_MASK 0xFFFFFFFFu

/* CNT_COMPUTE_BUSY_HI (RO): Performance counter compute_busy (cycles the compute unit was executing an instruction (PRELOAD, MATMUL streaming or draining, VECTOR)); reset by start, counts while the core is busy. Bits 47..32. */
#define SYSTOLAB_REG_CNT_COMPUTE_BUSY_HI 0x05Cu
#define SYSTOLAB_REG_CNT_COMPUTE_BUSY_HI_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_COMPUTE_BUSY_HI_VALUE_WIDTH 16
#define SYSTOLAB_REG_CNT_COMPUTE_BUSY_HI_VALUE_MASK 0x0000FFFFu

/* CNT_STORE_BUSY_LO (RO): Performance counter store_busy (cycles the store unit was executing an instruction); reset by start, counts while the core is busy. Bits 31..0. */
#define SYSTOLAB_REG_CNT_STORE_BUSY_LO 0x060u
#define SYSTOLAB_REG_CNT_STORE_BUSY_LO_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_STORE_BUSY_LO_VALUE_WIDTH 32
#define SYSTOLAB_REG_CNT_STORE_BUSY_LO_VALUE_MASK 0xFFFFFFFFu

/* CNT_STORE_BUSY_HI (RO): Performance counter store_busy (cycles the store unit was executing an instruction); reset by start, counts while the core is busy. Bits 47..32. */
#define SYSTOLAB_REG_CNT_STORE_BUSY_HI 0x064u
#define SYSTOLAB_REG_CNT_STORE_BUSY_HI_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_STORE_BUSY_HI_VALUE_WIDTH 16
#define SYSTOLAB_REG_CNT_STORE_BUSY_HI_VALUE_MASK 0x0000FFFFu

/* CNT_LOAD_WAIT_LO (RO): Performance counter load_wait (cycles the load unit's next instruction waited for a dependency token); reset by start, counts while the core is busy. Bits 31..0. */
#define SYSTOLAB_REG_CNT_LOAD_WAIT_LO 0x068u
#define SYSTOLAB_REG_CNT_LOAD_WAIT_LO_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_LOAD_WAIT_LO_VALUE_WIDTH 32
#define SYSTOLAB_REG_CNT_LOAD_WAIT_LO_VALUE_MASK 0xFFFFFFFFu

/* CNT_LOAD_WAIT_HI (RO): Performance counter load_wait (cycles the load unit's next instruction waited for a dependency token); reset by start, counts while the core is busy. Bits 47..32. */
#define SYSTOLAB_REG_CNT_LOAD_WAIT_HI 0x06Cu
#define SYSTOLAB_REG_CNT_LOAD_WAIT_HI_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_LOAD_WAIT_HI_VALUE_WIDTH 16
#define SYSTOLAB_REG_CNT_LOAD_WAIT_HI_VALUE_MASK 0x0000FFFFu

/* CNT_COMPUTE_WAIT_LO (RO): Performance counter compute_wait (cycles the compute unit's next instruction waited for a dependency token); reset by start, counts while the core is busy. Bits 31..0. */
#define SYSTOLAB_REG_CNT_COMPUTE_WAIT_LO 0x070u
#define SYSTOLAB_REG_CNT_COMPUTE_WAIT_LO_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_COMPUTE_WAIT_LO_VALUE_WIDTH 32
#define SYSTOLAB_REG_CNT_COMPUTE_WAIT_LO_VALUE_MASK 0xFFFFFFFFu

/* CNT_COMPUTE_WAIT_HI (RO): Performance counter compute_wait (cycles the compute unit's next instruction waited for a dependency token); reset by start, counts while the core is busy. Bits 47..32. */
#define SYSTOLAB_REG_CNT_COMPUTE_WAIT_HI 0x074u
#define SYSTOLAB_REG_CNT_COMPUTE_WAIT_HI_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_COMPUTE_WAIT_HI_VALUE_WIDTH 16
#define SYSTOLAB_REG_CNT_COMPUTE_WAIT_HI_VALUE_MASK 0x0000FFFFu

/* CNT_STORE_WAIT_LO (RO): Performance counter store_wait (cycles the store unit's next instruction waited for a dependency token); reset by start, counts while the core is busy. Bits 31..0. */
#define SYSTOLAB_REG_CNT_STORE_WAIT_LO 0x078u
#define SYSTOLAB_REG_CNT_STORE_WAIT_LO_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_STORE_WAIT_LO_VALUE_WIDTH 32
#define SYSTOLAB_REG_CNT_STORE_WAIT_LO_VALUE_MASK 0xFFFFFFFFu

/* CNT_STORE_WAIT_HI (RO): Performance counter store_wait (cycles the store unit's next instruction waited for a dependency token); reset by start, counts while the core is busy. Bits 47..32. */
#define SYSTOLAB_REG_CNT_STORE_WAIT_HI 0x07Cu
#define SYSTOLAB_REG_CNT_STORE_WAIT_HI_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_STORE_WAIT_HI_VALUE_WIDTH 16
#define SYSTOLAB_REG_CNT_STORE_WAIT_HI_VALUE_MASK 0x0000FFFFu

/* CNT_FETCH_STALL_LO (RO): Performance counter fetch_stall (cycles the fetch unit held a decoded instruction because its queue was full); reset by start, counts while the core is busy. Bits 31..0. */
#define SYSTOLAB_REG_CNT_FETCH_STALL_LO 0x080u
#define SYSTOLAB_REG_CNT_FETCH_STALL_LO_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_FETCH_STALL_LO_VALUE_WIDTH 32
#define SYSTOLAB_REG_CNT_FETCH_STALL_LO_VALUE_MASK 0xFFFFFFFFu

/* CNT_FETCH_STALL_HI (RO): Performance counter fetch_stall (cycles the fetch unit held a decoded instruction because its queue was full); reset by start, counts while the core is busy. Bits 47..32. */
#define SYSTOLAB_REG_CNT_FETCH_STALL_HI 0x084u
#define SYSTOLAB_REG_CNT_FETCH_STALL_HI_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_FETCH_STALL_HI_VALUE_WIDTH 16
#define SYSTOLAB_REG_CNT_FETCH_STALL_HI_VALUE_MASK 0x0000FFFFu

/* CNT_MEM_READS_LO (RO): Performance counter mem_reads (read requests accepted by the memory port); reset by start, counts while the core is busy. Bits 31..0. */
#define SYSTOLAB_REG_CNT_MEM_READS_LO 0x088u
#define SYSTOLAB_REG_CNT_MEM_READS_LO_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_MEM_READS_LO_VALUE_WIDTH 32
#define SYSTOLAB_REG_CNT_MEM_READS_LO_VALUE_MASK 0xFFFFFFFFu

/* CNT_MEM_READS_HI (RO): Performance counter mem_reads (read requests accepted by the memory port); reset by start, counts while the core is busy. Bits 47..32. */
#define SYSTOLAB_REG_CNT_MEM_READS_HI 0x08Cu
#define SYSTOLAB_REG_CNT_MEM_READS_HI_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_MEM_READS_HI_VALUE_WIDTH 16
#define SYSTOLAB_REG_CNT_MEM_READS_HI_VALUE_MASK 0x0000FFFFu

/* CNT_MEM_WRITES_LO (RO): Performance counter mem_writes (write requests accepted by the memory port); reset by start, counts while the core is busy. Bits 31..0. */
#define SYSTOLAB_REG_CNT_MEM_WRITES_LO 0x090u
#define SYSTOLAB_REG_CNT_MEM_WRITES_LO_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_MEM_WRITES_LO_VALUE_WIDTH 32
#define SYSTOLAB_REG_CNT_MEM_WRITES_LO_VALUE_MASK 0xFFFFFFFFu

/* CNT_MEM_WRITES_HI (RO): Performance counter mem_writes (write requests accepted by the memory port); reset by start, counts while the core is busy. Bits 47..32. */
#define SYSTOLAB_REG_CNT_MEM_WRITES_HI 0x094u
#define SYSTOLAB_REG_CNT_MEM_WRITES_HI_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_MEM_WRITES_HI_VALUE_WIDTH 16
#define SYSTOLAB_REG_CNT_MEM_WRITES_HI_VALUE_MASK 0x0000FFFFu

/* CNT_VECTOR_BUSY_LO (RO): Performance counter vector_busy (cycles the vector unit was executing a VECTOR (0 without a vector unit)); reset by start, counts while the core is busy. Bits 31..0. */
#define SYSTOLAB_REG_CNT_VECTOR_BUSY_LO 0x098u
#define SYSTOLAB_REG_CNT_VECTOR_BUSY_LO_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_VECTOR_BUSY_LO_VALUE_WIDTH 32
#define SYSTOLAB_REG_CNT_VECTOR_BUSY_LO_VALUE_MASK 0xFFFFFFFFu

/* CNT_VECTOR_BUSY_HI (RO): Performance counter vector_busy (cycles the vector unit was executing a VECTOR (0 without a vector unit)); reset by start, counts while the core is busy. Bits 47..32. */
#define SYSTOLAB_REG_CNT_VECTOR_BUSY_HI 0x09Cu
#define SYSTOLAB_REG_CNT_VECTOR_BUSY_HI_VALUE_LSB 0
#define SYSTOLAB_REG_CNT_VECTOR_BUSY_HI_VALUE_WIDTH 16
#define SYSTOLAB_REG_CNT_VECTOR_BUSY_HI_VALUE_MASK 0x0000FFFFu

/* The counters in hw/counters.py order: name, offset of LO, offset of HI (0: none). */
static const char *const systolab_counter_names[12] = {
    "cycles",
    "array_busy",
    "load_busy",
    "compute_busy",
    "store_busy",
    "load_wait",
    "compute_wait",
    "store_wait",
    "fetch_stall",
    "mem_reads",
    "mem_writes",
    "vector_busy",
};
static const uint32_t systolab_counter_offsets[12][2] = {
    {0x040u, 0x044u},
    {0x048u, 0x04Cu},
    {0x050u, 0x054u},
    {0x058u, 0x05Cu},
    {0x060u, 0x064u},
    {0x068u, 0x06Cu},
    {0x070u, 0x074u},
    {0x078u, 0x07Cu},
    {0x080u, 0x084u},
    {0x088u, 0x08Cu},
    {0x090u, 0x094u},
    {0x098u, 0x09Cu},
};

#endif /* SYSTOLAB_REGS_H */
