"""The `systolab` command line.

    systolab generate CONFIG -o DIR [--top {sim,core,axi}]...
    systolab run CONFIG --workload gemm:MxKxN --sim {func,model,rtl,verilator} [--seed N] [--relu] [--json]
    systolab run CONFIG --model M.onnx --input X.npy [--output Y.npy] --sim {func,model,rtl,verilator} [--json]
    systolab run CONFIG --model M.mlir [--input X.npy] [--emit-mlir P.mlir [--emit-mlir-steps]] --sim S
    systolab sweep FILE ... / systolab report DB ...   (app/sweep_cli.py)
    systolab build CONFIG --board ulx3s-85f -o DIR [--mem-kib N] [--baud B] [--json]
    systolab fpga run --port DEV --config CONFIG --workload gemm:MxKxN [--baud B] [--json]
    systolab serve [--host 127.0.0.1] [--port 8000] [--store DIR] [--token T]

Exit status: 0 success, 1 a result that does not match its reference, 2 bad input (one line on
stderr naming the file, key or argument and what is allowed; no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from systolab.errors import UserError

from .sweep_cli import add_report_parser, add_sweep_parser

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message):  # noqa: D401 - argparse API
        raise UserError(f"{self.prog}: {message}")


def seed(text: str) -> int:
    """argparse type of `--seed`: an integer from 0 to 2**32 - 1 (what numpy's generators take)."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not 0 <= n < 2**32:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {2**32 - 1}, not {text!r}")
    return n


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- generate ---------------------------------------------------------------------------------------
def cmd_generate(args) -> int:
    from systolab.config import load_config
    from systolab.hw.verilog import TOP_NAMES, generate_verilog
    from systolab.isa import ISA
    from systolab.isa.docs import render_c_header, render_markdown

    from .files import check_output_dir

    cfg = load_config(args.config)
    out = check_output_dir(args.output, option="-o")
    out.mkdir(parents=True, exist_ok=True)
    isa = ISA(cfg)
    tops = args.top or ["sim", "core"]
    files = {f"{TOP_NAMES[top]}.v": (lambda top=top: generate_verilog(cfg, top=top))
             for top in dict.fromkeys(tops)}
    files.update({
        "isa.md": lambda: render_markdown(isa),
        "systolab_isa.h": lambda: render_c_header(isa),
    })
    if "axi" in tops:
        from systolab.hw.regmap.docs import render_c_header as regs_header
        from systolab.hw.regmap.docs import render_markdown as regs_markdown
        files.update({"registers.md": regs_markdown, "systolab_regs.h": regs_header})
    for name, make in files.items():
        (out / name).write_text(make())
        _log(f"wrote {out / name}")
    return 0


# -- run --------------------------------------------------------------------------------------------
def cmd_run(args) -> int:
    from systolab.config import load_config
    from systolab.sim.run import run_workload

    cfg = load_config(args.config)
    from systolab.isa.mlir import program_to_mlir

    emit = _check_emit(args)
    if args.model is not None:
        if Path(args.model).suffix == ".mlir":
            return cmd_run_mlir(cfg, args, emit)
        if emit:
            raise UserError("systolab run: --emit-mlir goes with --workload gemm:MxKxN or --model M.mlir")
        return cmd_run_model(cfg, args)
    if args.input or args.output:
        raise UserError("systolab run: --input and --output go with --model")
    if args.emit_mlir_steps:
        raise UserError("systolab run: --emit-mlir-steps goes with --model M.mlir (the lowering of its layers)")
    if args.sim in ("rtl", "verilator") and not args.json:
        _log(f"running on the RTL of {cfg.describe()} (Verilator build cached by config hash {cfg.hash})")
    report = run_workload(cfg, args.workload, args.sim, seed=args.seed, relu=args.relu, trace=args.trace,
                          on_program=None if emit is None else lambda prog: _write_mlir(emit, program_to_mlir(prog, cfg)))
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print_report(report)
    return 0 if report.passed else 1


def _check_emit(args) -> Path | None:
    """The --emit-mlir file, checked before anything runs."""
    from .files import check_output_path

    if args.emit_mlir_steps and not args.emit_mlir:
        raise UserError("systolab run: --emit-mlir-steps needs --emit-mlir FILE.mlir")
    if not args.emit_mlir:
        return None
    return check_output_path(args.emit_mlir, option="--emit-mlir", suffixes=(".mlir",),
                             not_one_of=(args.model, args.config, args.input))


def _write_mlir(path: Path, text: str) -> None:
    path.write_text(text)
    _log(f"wrote {path}")


def cmd_run_mlir(cfg, args, emit: Path | None) -> int:
    """`systolab run CONFIG --model M.mlir [--input X.npy|.npz] [--output Y.npy] [--emit-mlir P.mlir
    [--emit-mlir-steps]] --sim S [--json]`: an integer linalg program, checked bit-exact against
    systolab's numpy reference; without --input it runs on random int8 inputs (--seed)."""
    from systolab.codegen.mlir_import import load_mlir, parse_mlir
    from systolab.codegen.mlir_lower import network_steps
    from systolab.isa.mlir import programs_to_mlir
    from systolab.sim.run import run_mlir

    from .files import check_output_path, load_inputs, save_outputs

    if args.output:
        check_output_path(args.output, option="--output", suffixes=(".npy", ".npz"),
                          not_one_of=(args.input, args.model, args.config))
    net = load_mlir(args.model)                      # every op checked before anything is compiled
    inputs = load_inputs(args.input, net.inputs) if args.input else None

    def emit_programs(compiled):
        if args.emit_mlir_steps:
            module, _, _ = parse_mlir(Path(args.model).read_text(), args.model)
            _write_mlir(emit, network_steps(compiled, module))
        else:
            _write_mlir(emit, programs_to_mlir(compiled))

    if args.sim in ("rtl", "verilator") and not args.json:
        _log(f"running on the RTL of {cfg.describe()} (Verilator build cached by config hash {cfg.hash})")
    report, outputs = run_mlir(cfg, args.model, inputs, args.sim, im2col=args.im2col, seed=args.seed,
                               on_compiled=emit_programs if emit else None)
    if args.output:
        save_outputs(args.output, outputs)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print_model_report(report)
        if args.output:
            _log(f"wrote {args.output}")
    return 0 if report.passed else 1


def cmd_run_model(cfg, args) -> int:
    """`systolab run CONFIG --model M.onnx --input X.npy [--output Y.npy] --sim S [--json]`: every
    file is checked before the model is compiled."""
    from systolab.codegen.onnx_import import load_onnx
    from systolab.sim.run import check_model_inputs, run_onnx

    from .files import check_output_path, load_inputs, save_outputs

    if not args.input:
        raise UserError("systolab run: --model needs --input X.npy (or X.npz with one array per input)")
    if args.output:
        check_output_path(args.output, option="--output", suffixes=(".npy", ".npz"),
                          not_one_of=(args.input, args.model, args.config))
    net = load_onnx(args.model)
    inputs = check_model_inputs(net, load_inputs(args.input, net.inputs), source=f"--input {args.input}")
    if args.sim in ("rtl", "verilator") and not args.json:
        _log(f"running on the RTL of {cfg.describe()} (Verilator build cached by config hash {cfg.hash})")
    report, outputs = run_onnx(cfg, args.model, inputs, args.sim, im2col=args.im2col)
    if args.output:
        save_outputs(args.output, outputs)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print_model_report(report)
        if args.output:
            _log(f"wrote {args.output}")
    return 0 if report.passed else 1


def print_report(r) -> None:
    """A `RunReport` of a GEMM as a table."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{r.workload} on {r.sim} ({r.config}, {r.config_hash})", show_header=False)
    status = "[green]pass[/]" if r.passed else f"[red]FAIL[/] ({r.failure})"
    t.add_row("result vs numpy", status)
    for key in ("cycles", "ideal_cycles", "macs"):
        if getattr(r, key) is not None:
            t.add_row(key, f"{getattr(r, key):,}")
    if r.utilization is not None:
        t.add_row("utilization", f"{r.utilization:.3f}")
    t.add_row("instructions", f"{r.instructions:,}")
    for k, v in r.timings.items():
        t.add_row(k, f"{v:.2f}")
    if r.sim in ("rtl", "verilator") and r.cycles and r.timings.get("sim_s"):
        t.add_row("simulated cycles/s", f"{r.cycles / r.timings['sim_s']:,.0f}")
    for k, v in r.extra.items():
        t.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
    for k, v in r.counters.items():
        if k != "cycles":
            t.add_row(f"counter {k}", f"{v:,}")
    Console().print(t)


def print_model_report(r) -> None:
    """A `RunReport` of a model: one row per layer, the checks against the references."""
    from rich.console import Console
    from rich.table import Table

    def num(v, fmt="{:,}"):
        return "-" if v is None else fmt.format(v)

    t = Table(title=f"{Path(r.model).name} on {r.sim} ({r.config}, {r.config_hash})")
    for col in ("layer", "op", "where", "passes", "cycles", "MACs", "utilization", "note"):
        t.add_column(col, justify="right" if col in ("passes", "cycles", "MACs", "utilization") else "left")
    for layer in r.layers:
        acc = layer["where"] == "accelerator"
        t.add_row(layer["name"], layer["op"], layer["where"], num(layer["passes"]) if acc else "",
                  num(layer["cycles"]) if acc else "", num(layer["macs"]) if acc else "",
                  num(layer.get("utilization"), "{:.3f}") if acc else "", layer.get("note", ""))
    t.add_row("total", "", "", "", num(r.cycles), num(r.macs), num(r.utilization, "{:.3f}"), "",
              style="bold")
    console = Console(width=max(Console().width, 132))
    console.print(t)
    status = "[green]pass[/]" if r.mismatches == 0 else "[red]FAIL[/]"
    console.print(f"result vs numpy reference: {status} ({r.mismatches} elements differ)")
    if r.ort is not None:
        o = r.ort
        console.print(f"vs ONNX Runtime: max {o['max_diff_lsb']} LSB, {o['off_by_one']} of {o['elements']} "
                      f"elements off by one (systolab rounds exact .5 ties up, ONNX Runtime to even in float32)")
    console.print("timings: " + ", ".join(f"{k} {v:.2f}" for k, v in r.timings.items()))


# -- build / fpga run (systolab.app.fpga) ---------------------------------------------------------------
def cmd_build(args) -> int:
    from systolab.config import load_config
    from systolab.hw.bitstream import TimingError, board_summary_text, build_board

    cfg = load_config(args.config)
    try:
        summary = build_board(cfg, args.output, board=args.board, mem_kib=args.mem_kib,
                              baud=args.baud, dsp=not args.no_dsp, log=None if args.json else _log)
    except TimingError as e:
        if args.json:
            print(json.dumps(e.summary))
        else:
            print(board_summary_text(e.summary), end="")
        print(f"systolab build: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary))
    else:
        print(board_summary_text(summary), end="")
        _log(f"wrote {summary['bitstream']} and {Path(args.output) / 'summary.txt'}"
             + (" (from the build cache)" if summary.get("cached") else ""))
    return 0


def cmd_fpga_run(args) -> int:
    from systolab.config import load_config
    from .fpga import fpga_run

    cfg = load_config(args.config)
    report = fpga_run(args.port, cfg, args.workload, baud=args.baud, seed=args.seed, relu=args.relu)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print_report(report)
    return 0 if report.passed else 1


# -- serve (systolab.app.web) -------------------------------------------------------------------------
def cmd_serve(args) -> int:
    from .web import serve

    serve(host=args.host, port=args.port, store=args.store, token=args.token,
          max_upload_mib=args.max_upload_mib, max_jobs=args.max_jobs, log=_log)
    return 0


# -- parser -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from systolab.sim.run import SIMS

    p = _Parser(prog="systolab", description="systolic DNN accelerator co-design toolkit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    g = sub.add_parser("generate", help="write the Verilog, isa.md and the C header for a config")
    g.add_argument("config", help="accelerator config (YAML)")
    g.add_argument("-o", "--output", required=True, help="output directory")
    g.add_argument("--top", action="append", choices=("sim", "core", "axi"),
                   help="which top to write, may be repeated (default: sim and core); axi: the "
                        "AXI4 / AXI4-Lite top (systolab_axi.v) with registers.md and systolab_regs.h")
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("run", help="compile a workload or an ONNX model, run it on a simulator, check it")
    r.add_argument("config", help="accelerator config (YAML)")
    what = r.add_mutually_exclusive_group(required=True)
    what.add_argument("--workload", help="gemm:MxKxN")
    what.add_argument("--model", metavar="M.onnx", help="a quantized ONNX model (QDQ or QOperator format), or "
                                                         "an integer linalg-on-tensors MLIR program (.mlir)")
    r.add_argument("--input", metavar="X.npy", help="the model's input (.npz: one array per input name)")
    r.add_argument("--output", metavar="Y.npy", help="save the model's outputs as ONNX Runtime returns them")
    r.add_argument("--im2col", choices=("auto", "dma", "memory"), default="auto",
                   help="convolutions on a model input: taps gathered by strided LOADs (dma), im2col "
                        "written by the host (memory), or the faster by the performance model (auto)")
    r.add_argument("--sim", choices=SIMS, default="func", help="simulator (default: func)")
    r.add_argument("--seed", type=seed, default=0, help="random seed of the operands (default 0)")
    r.add_argument("--relu", action="store_true", help="apply ReLU in the store path")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.add_argument("--emit-mlir", metavar="P.mlir",
                   help="write the compiled program in the systolab MLIR dialect (a model: the one program "
                        "its layers run as; one module per layer, separated by // -----, when it runs "
                        "layer by layer)")
    r.add_argument("--emit-mlir-steps", action="store_true",
                   help="with --emit-mlir and an .mlir model: write the lowering of every layer instead "
                        "(input, tiling, buffer assignment, scheduling)")
    r.add_argument("--trace", metavar="FILE.fst", help="write a waveform, .fst or .vcd (rtl and verilator sims)")
    r.set_defaults(func=cmd_run)

    from systolab.hw.bitstream import BOARDS, DEFAULT_BAUD, DEFAULT_MEM_KIB
    b = sub.add_parser("build", help="build an FPGA board image (bitstream, timing and utilization)")
    b.add_argument("config", help="accelerator config (YAML)")
    b.add_argument("--board", choices=tuple(BOARDS), required=True, help="target board")
    b.add_argument("-o", "--output", required=True, help="output directory")
    b.add_argument("--mem-kib", type=int, default=DEFAULT_MEM_KIB,
                   help=f"on-chip memory behind the core, KiB, a power of two (default {DEFAULT_MEM_KIB})")
    b.add_argument("--baud", type=int, default=DEFAULT_BAUD,
                   help=f"UART bridge baud rate (default {DEFAULT_BAUD})")
    b.add_argument("--no-dsp", action="store_true",
                   help="build every multiplier from LUTs (by default only as many PE multipliers as "
                        "it takes to fit the device's MULT18X18D blocks are)")
    b.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    b.set_defaults(func=cmd_build)

    f = sub.add_parser("fpga", help="run programs on a board built with `systolab build`")
    fsub = f.add_subparsers(dest="fpga_command", required=True, parser_class=_Parser)
    fr = fsub.add_parser("run", help="load a workload through the UART bridge, run it, check it")
    fr.add_argument("--port", required=True, help="serial device of the board (e.g. /dev/ttyUSB0)")
    fr.add_argument("--config", required=True, help="the config the bitstream was built from (YAML)")
    fr.add_argument("--workload", required=True, help="gemm:MxKxN")
    fr.add_argument("--baud", type=int, default=DEFAULT_BAUD,
                    help=f"baud rate the bitstream was built for (default {DEFAULT_BAUD})")
    fr.add_argument("--seed", type=seed, default=0, help="random seed of the operands (default 0)")
    fr.add_argument("--relu", action="store_true", help="apply ReLU in the store path")
    fr.add_argument("--json", action="store_true", help="print one JSON object")
    fr.set_defaults(func=cmd_fpga_run)

    w = sub.add_parser("serve", help="the web front end: edit configs, compile, timelines, runs, sweeps")
    w.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; any other needs a token)")
    w.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    w.add_argument("--store", default="web-store",
                   help="directory for uploads, programs, runs and sweeps (default web-store/)")
    w.add_argument("--token", help="require this token on every request (default: $SYSTOLAB_TOKEN)")
    w.add_argument("--max-upload-mib", type=int, default=64, help="largest upload in MiB (default 64)")
    w.add_argument("--max-jobs", type=int, default=2, help="background jobs at once (default 2)")
    w.set_defaults(func=cmd_serve)

    add_sweep_parser(sub)
    add_report_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen command: a `UserError` is one line on stderr and exit
    status 2, Ctrl-C exit status 130 (every systolab entry point goes through here)."""
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except UserError as e:
        msg = str(e)
        if not msg.startswith("systolab"):
            msg = f"systolab: error: {msg}"
        print(msg, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("systolab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
