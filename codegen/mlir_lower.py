"""The compiler's lowering shown in MLIR, step by step, from its real decisions.

For every accelerator layer of a compiled network (`codegen.network.compile_network`), in one text
of modules separated by `// -----` (MLIR's split-input-file marker, each part parses on its own):

1. input: the program as xDSL parsed it (`linalg` on tensors);
2. tiling: the layer as the GEMM the array computes (M = output pixels, K = chunks of
   `array.rows` input channels per tap, N = output channels), cut by the tiling the performance
   model chose (`GemmTiling`: `mt` rows per output tile, A resident or streamed): `scf.for` over
   row blocks, column tiles of `array.cols` and K chunks, `tensor.extract_slice` of each tile, a
   `linalg.matmul` per chunk into an i32 tile and the STORE's requantization per output tile;
3. buffer assignment: where each tensor lives in external memory (`systolab.regions`), how the
   scratchpad and accumulator are split (`BufferPlan`), and the instruction stream with those
   addresses, before dependency tokens;
4. scheduling: the same instructions with the tokens the builder added (SSA values of
   `!systolab.token<...>`), i.e. the program that runs.

Nothing here decides anything: the tilings are those `compile_network` recorded, the plan is
`GemmTiling.plan`, the instructions are the compiled layer's.
"""

from __future__ import annotations

from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, IntegerAttr, StringAttr, i64

from systolab.isa import TOKEN_FLAGS
from systolab.isa.mlir import insns_to_module, print_module

from .builder import round_up
from .gemm import GemmTiling
from .mlir_models import _ttype

__all__ = ["network_steps", "SPLIT"]

SPLIT = "// -----"


def network_steps(compiled, module=None) -> str:
    """The lowering of every accelerator layer of `compiled` (a `CompiledNetwork`) as MLIR text;
    `module` is the parsed input program (xDSL), printed first when given."""
    cfg = compiled.cfg
    parts = []
    if module is not None:
        parts.append(f"// step 1: input ({compiled.net.name}), as parsed\n" + print_module(module))
    for cl in compiled.layers:
        layer = cl.layer
        if layer.unit == "vector":
            parts.append(f"// layer {layer.name} ({layer.op}) runs on the vector unit "
                         f"({len(cl.insns)} instructions; its lowering is not shown in MLIR)\nmodule {{\n}}")
            continue
        for op, tiling in zip(layer.ops, cl.tilings):
            parts.append(_tiled(cfg, layer, op, tiling))
        parts.append(_buffers(cfg, compiled, cl))
        parts.append(f"// step 4: scheduling of layer {layer.name}: the program with its dependency tokens "
                     f"({len(cl.insns)} instructions)\n" + print_module(insns_to_module(cfg, cl.insns)))
    return f"\n{SPLIT}\n".join(parts)


def _tiled(cfg, layer, op, tiling: dict) -> str:
    R, C = cfg.rows, cfg.cols
    M, K, N = op.out.m, tiling["chunks"] * R, op.out.c
    Np = round_up(N, C)
    t = GemmTiling.from_json(tiling)
    plan = t.plan(cfg, (M, K, N))
    mt = t.mt
    if any(tm.src.name.endswith(":im2col") for tm in op.terms):
        gather = "the im2col rows the host wrote into the memory image"
    elif all(tm.kernel == (1, 1) and tm.stride == (1, 1) and not any(tm.pads) for tm in op.terms):
        gather = "the activation rows"
    else:
        gather = "the taps gathered from the NHWC input by strided LOADs (no im2col in memory)"
    head = [f"// step 2: tiling of {op.name} ({layer.op}) as a {M}x{K}x{N} GEMM on the {cfg.label} array:",
            f"//   {t} chosen by the performance model; {-(-M // mt)} row block(s) of {mt}, {Np // C} column "
            f"tile(s) of {C}, {tiling['chunks']} K chunk(s) of {R};",
            f"//   A = {gather}; B = the weights (K padded to {K}, N to {Np}); each output tile is "
            f"requantized by one STORE;",
            f"//   buffers: {plan}" if plan else "//   (no buffer plan)"]
    L = ["module {", f"  func.func @{_sym(op.name)}(%A: {_ttype((M, K), 8)}, %B: {_ttype((K, Np), 8)}, "
                     f"%params: {_ttype((4, Np), 32)}) -> {_ttype((M, Np), 8)} {{"]
    ind = "    "
    consts = sorted({0, mt, C, R, K, Np, M - M % mt, M})
    for v in consts:
        L.append(f"{ind}%i{v} = arith.constant {v} : index")
    L.append(f"{ind}%out0 = tensor.empty() : {_ttype((M, Np), 8)}")
    cur = "%out0"
    blocks = [(0, M - M % mt, mt)] if M >= mt else []
    if M % mt:
        blocks.append((M - M % mt, M, M % mt))
    for bi, (lo, hi, rows) in enumerate(blocks):
        loop = hi - lo > rows
        res = f"%out{bi + 1}"
        if loop:
            L.append(f"{ind}{res} = scf.for %m{bi} = %i{lo} to %i{hi} step %i{rows} iter_args(%o{bi} = {cur}) -> "
                     f"({_ttype((M, Np), 8)}) {{")
            m0, inner, src = f"%m{bi}", ind + "  ", f"%o{bi}"
        else:
            m0, inner, src = f"%i{lo}", ind, cur
        L += _column_loop(cfg, rows, M, K, Np, m0, src, f"{res}n" if loop else res, inner, op.relu, bi)
        if loop:
            L.append(f"{inner}scf.yield {res}n : {_ttype((M, Np), 8)}")
            L.append(f"{ind}}}")
        cur = res
    L += [f"{ind}return {cur} : {_ttype((M, Np), 8)}", "  }", "}"]
    return "\n".join(head + L) + "\n"


def _column_loop(cfg, rows, M, K, Np, m0, src, res, ind, relu, bi) -> list[str]:
    """The column tiles of one block of `rows` output rows starting at `m0`."""
    R, C = cfg.rows, cfg.cols
    tile8, tile32 = _ttype((rows, C), 8), _ttype((rows, C), 32)
    out_t, a_t, b_t, p_t = _ttype((M, Np), 8), _ttype((M, K), 8), _ttype((K, Np), 8), _ttype((4, Np), 32)
    L = [f"{ind}{res} = scf.for %n{bi} = %i0 to %i{Np} step %i{C} iter_args(%c{bi} = {src}) -> ({out_t}) {{"]
    i2 = ind + "  "
    L += [f"{i2}%z{bi} = arith.constant 0 : i32",
          f"{i2}%e{bi} = tensor.empty() : {tile32}",
          f"{i2}%acc0_{bi} = linalg.fill ins(%z{bi} : i32) outs(%e{bi} : {tile32}) -> {tile32}",
          f"{i2}%acc{bi} = scf.for %k{bi} = %i0 to %i{K} step %i{R} iter_args(%a{bi} = %acc0_{bi}) -> ({tile32}) {{"]
    i3 = i2 + "  "
    L += [f"{i3}%at{bi} = tensor.extract_slice %A[{m0}, %k{bi}] [{rows}, {R}] [1, 1] : "
          f"{a_t} to {_ttype((rows, R), 8)}",
          f"{i3}%bt{bi} = tensor.extract_slice %B[%k{bi}, %n{bi}] [{R}, {C}] [1, 1] : "
          f"{b_t} to {_ttype((R, C), 8)}",
          f"{i3}%p{bi} = linalg.matmul ins(%at{bi}, %bt{bi} : {_ttype((rows, R), 8)}, {_ttype((R, C), 8)}) "
          f"outs(%a{bi} : {tile32}) -> {tile32}",
          f"{i3}scf.yield %p{bi} : {tile32}",
          f"{i2}}}",
          f"{i2}%pt{bi} = tensor.extract_slice %params[0, %n{bi}] [4, {C}] [1, 1] : {p_t} to "
          f"{_ttype((4, C), 32)}"]
    L += _store(i2, bi, rows, C, relu)
    L += [f"{i2}%c{bi}n = tensor.insert_slice %q{bi} into %c{bi}[{m0}, %n{bi}] [{rows}, {C}] [1, 1] : "
          f"{tile8} into {out_t}",
          f"{i2}scf.yield %c{bi}n : {out_t}",
          f"{ind}}}"]
    return L


def _store(ind, bi, rows, C, relu) -> list[str]:
    """The STORE of one tile: rows 0..3 of the parameters are bias, multiplier, shift, zero point
    per column (`codegen.quant.requantize`)."""
    t32, t8 = _ttype((rows, C), 32), _ttype((rows, C), 8)
    p = f"%s{bi}_"
    maps = ("[affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (0, d1)>, affine_map<(d0, d1) -> (1, d1)>, "
            "affine_map<(d0, d1) -> (2, d1)>, affine_map<(d0, d1) -> (3, d1)>, affine_map<(d0, d1) -> (d0, d1)>]")
    pt = _ttype((4, C), 32)
    return [
        f"{ind}%qe{bi} = tensor.empty() : {t8}",
        f"{ind}%q{bi} = linalg.generic {{indexing_maps = {maps}, iterator_types = [\"parallel\", \"parallel\"]}} "
        f"ins(%acc{bi}, %pt{bi}, %pt{bi}, %pt{bi}, %pt{bi} : {t32}, {pt}, {pt}, {pt}, {pt}) outs(%qe{bi} : {t8}) "
        f"attrs = {{systolab.store = \"requantize\", systolab.relu = {int(relu)}}} {{",
        f"{ind}^bb0({p}acc: i32, {p}bias: i32, {p}mult: i32, {p}shift: i32, {p}zp: i32, {p}out: i8):",
        f"{ind}  {p}x = arith.addi {p}acc, {p}bias : i32",
        f"{ind}  {p}x64 = arith.extsi {p}x : i32 to i64",
        f"{ind}  {p}m64 = arith.extsi {p}mult : i32 to i64",
        f"{ind}  {p}s64 = arith.extsi {p}shift : i32 to i64",
        f"{ind}  {p}z64 = arith.extsi {p}zp : i32 to i64",
        f"{ind}  {p}prod = arith.muli {p}x64, {p}m64 : i64",
        f"{ind}  {p}one = arith.constant 1 : i64",
        f"{ind}  {p}zero = arith.constant 0 : i64",
        f"{ind}  {p}sm1 = arith.subi {p}s64, {p}one : i64",
        f"{ind}  {p}half = arith.shli {p}one, {p}sm1 : i64",
        f"{ind}  {p}pos = arith.cmpi sgt, {p}s64, {p}zero : i64",
        f"{ind}  {p}rnd = arith.select {p}pos, {p}half, {p}zero : i64",
        f"{ind}  {p}sum = arith.addi {p}prod, {p}rnd : i64",
        f"{ind}  {p}sh = arith.shrsi {p}sum, {p}s64 : i64",
        f"{ind}  {p}y = arith.addi {p}sh, {p}z64 : i64",
        f"{ind}  {p}lo = arith.constant -128 : i64",
        f"{ind}  {p}lo2 = " + (f"arith.maxsi {p}z64, {p}lo : i64" if relu else f"arith.addi {p}lo, {p}zero : i64"),
        f"{ind}  {p}hi = arith.constant 127 : i64",
        f"{ind}  {p}c1 = arith.maxsi {p}y, {p}lo2 : i64",
        f"{ind}  {p}c2 = arith.minsi {p}c1, {p}hi : i64",
        f"{ind}  {p}r = arith.trunci {p}c2 : i64 to i8",
        f"{ind}  linalg.yield {p}r : i8",
        f"{ind}}} -> {t8}",
    ]


def _buffers(cfg, compiled, cl) -> str:
    layer = cl.layer
    used = {t.src.name for op in layer.ops for t in op.terms} | {op.out.name for op in layer.ops}
    regions = {}
    for name, r in compiled.regions.items():
        if name in used or name.split("#")[0] == layer.name or name.startswith(f"{layer.name}#"):
            regions[name] = ArrayAttr([IntegerAttr(v, i64) for v in (r.addr, *r.shape, r.row_stride)])
    plans = {}
    for op, tiling in zip(layer.ops, cl.tilings):
        t = GemmTiling.from_json(tiling)
        plan = t.plan(cfg, (op.out.m, tiling["chunks"] * cfg.rows, op.out.c))
        if plan is not None:
            plans[op.name] = DictionaryAttr({
                "mt": IntegerAttr(t.mt, i64), "a_resident": IntegerAttr(int(t.a_resident), i64),
                "group": IntegerAttr(t.group, i64),
                "a_slots": IntegerAttr(plan.a_slots, i64), "a_slot_rows": IntegerAttr(plan.a_slot_rows, i64),
                "w_slots": IntegerAttr(plan.w_slots, i64), "w_base_row": IntegerAttr(plan.a_slots * plan.a_slot_rows, i64),
                "acc_slots": IntegerAttr(plan.acc_slots, i64), "acc_slot_rows": IntegerAttr(t.mt, i64)})
    untokened = [(op, {k: v for k, v in f.items() if k not in TOKEN_FLAGS}) for op, f in cl.insns]
    module = insns_to_module(cfg, untokened, attrs={
        "systolab.regions": DictionaryAttr(regions),        # name: [byte address, rows, cols, row stride]
        "systolab.buffers": DictionaryAttr(plans),
        "systolab.layer": StringAttr(layer.name)})
    head = (f"// step 3: buffer assignment of layer {layer.name}: external memory regions "
            f"([address, rows, cols, row stride]), the scratchpad/accumulator split of each pass (rows), "
            f"and the instructions with their addresses, before dependency tokens\n")
    return head + print_module(module)


def _sym(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
