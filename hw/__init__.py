"""systolab hardware: Amaranth 0.5 components generated from one `HardwareConfig`.

=============  ==========================================================================
module         what it holds
=============  ==========================================================================
pe, array      the PE and the weight-stationary systolic array (skew / de-skew)
buffers        scratchpad and accumulator (`lib.memory`)
memport        the external memory port (layouts, signature) and the request arbiter
dma            row reader / row writer engines (2-D strided, pipelined reads)
fetch          instruction fetch, decode (ISA layouts) and dispatch to the queues
tokens         dependency token counters
load           load unit (LOAD)
compute        compute unit (PRELOAD, MATMUL, SYNC) around the array
requant        the store path's requantizer
store          store unit (STORE)
counters       performance counter names
timing         pipeline delays the software models need (array latency, compute pipeline)
top            `Accelerator`: the synthesizable core (``systolab_core``)
memmodel       memory model for simulation
simtop         `SimTop`: core + memory model + host port (``systolab_top``)
regmap         the register map from ``regmap/registers.yaml`` (model); ``regmap.gateware`` the
               CSR block, ``regmap.docs`` the C header and Markdown
axi            `AxiTop`: AXI4 manager + AXI4-Lite registers around the core (``systolab_axi``)
uart, bridge   8N1 UART and the byte protocol from a UART to the registers and memory
onchip         on-chip block RAM behind the memory port (FPGA images)
board          board tops (core + registers + on-chip memory + UART bridge; ULX3S)
verilog        `generate_verilog(cfg, top="sim" | "core" | "axi")`
synth          Yosys ``synth_ecp5`` + nextpnr-ecp5 on a config's core (area, Fmax), cached
bitstream      the board image build behind ``systolab build`` (bitstream, timing, utilization)
common         argument checks and ISA-derived widths shared by the units
=============  ==========================================================================
"""
