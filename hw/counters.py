"""Performance counters: the one list of names, read by the RTL testbenches, the native harness,
the performance model and the reports. The hardware exposes each as a `cnt_<name>` port."""

#: counter width in bits
COUNTER_BITS = 48

#: name -> what the hardware counts (cycles between `start` and `done`)
COUNTERS: dict[str, str] = {
    "cycles": "cycles from start to done",
    "array_busy": "cycles in which an activation row entered the PE array (MAC-active cycles)",
    "load_busy": "cycles the load unit was executing an instruction",
    "compute_busy": "cycles the compute unit was executing an instruction (PRELOAD, MATMUL streaming or draining, VECTOR)",
    "store_busy": "cycles the store unit was executing an instruction",
    "load_wait": "cycles the load unit's next instruction waited for a dependency token",
    "compute_wait": "cycles the compute unit's next instruction waited for a dependency token",
    "store_wait": "cycles the store unit's next instruction waited for a dependency token",
    "fetch_stall": "cycles the fetch unit held a decoded instruction because its queue was full",
    "mem_reads": "read requests accepted by the memory port",
    "mem_writes": "write requests accepted by the memory port",
    "vector_busy": "cycles the vector unit was executing a VECTOR (0 without a vector unit)",
}
