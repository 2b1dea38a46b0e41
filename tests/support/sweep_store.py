"""A results store as a finished sweep leaves it, with made-up numbers (tests/test_co_design_*.py)."""

from systolab.co_design.evaluators import make_task, task_key
from systolab.co_design.spec import parse_sweep
from systolab.co_design.store import ResultStore

__all__ = ["SWEEP", "fake_cycles", "fabricate"]

SWEEP = {
    "name": "synthetic",
    "axes": {"array.rows": [4, 8], "array.cols": [4, 8], "scratchpad.depth": [256, 1024]},
    "workloads": [{"name": "fc", "gemm": [64, 64, 64]}, {"name": "odd", "gemm": [50, 72, 40]}],
    "evaluate": ["model", "rtl", "synth"],
    "objectives": {"latency_s": "min", "lut": "min"},
    "constraints": {"comb": {"max": 3000}},
}


def fake_cycles(cfg, w):
    pes = cfg.rows * cfg.cols
    return int(w.macs / pes * (1.3 if cfg.scratchpad.depth == 256 else 1.1)) + 40 * cfg.rows


def fabricate(path):
    """A store as a finished sweep leaves it, with made-up numbers and two failures."""
    spec = parse_sweep(SWEEP, source="synthetic.yaml")
    store = ResultStore(path)
    store.put_sweep(spec.to_dict())
    points = spec.grid()
    store.add_points(spec.name, [(p.hash, p.config.to_dict(), p.axes) for p in points], "measured")
    truth = {}
    for i, p in enumerate(points):
        cfg = p.config
        pes = cfg.rows * cfg.cols
        synth = {"lut": 100 * pes + cfg.scratchpad.depth // 8, "ff": 80 * pes, "dsp": pes, "bram": 2,
                 "comb": 150 * pes, "fmax_mhz": 120.0 - pes / 2, "ccu2c": 0, "lutram": 0,
                 "pnr_mode": "placed", "synth_s": 1.0}
        truth[(p.hash, "synth")] = synth
        ok = {"status": "ok", "error": None, "tool_versions": {"systolab": "test"}, "wall_s": 0.1}
        store.record(task_key(make_task("synth", cfg)), {**ok, "metrics": synth})
        for w in spec.workloads:
            model = fake_cycles(cfg, w)
            rtl = int(model * (1.0 + 0.02 * ((i % 3) - 1)))
            truth[(p.hash, w.key)] = (model, rtl)
            store.record(task_key(make_task("model", cfg, w)), {**ok, "metrics": {"cycles": model, "macs": w.macs}})
            if i == 5 and w.name == "odd":
                store.record(task_key(make_task("rtl", cfg, w)),
                             {"status": "timeout", "metrics": None, "tool_versions": {},
                              "error": "rtl: no result within the wall-clock limit of 900 s (limits.timeout_s)"})
                truth[(p.hash, w.key)] = (model, None)
            else:
                store.record(task_key(make_task("rtl", cfg, w)), {**ok, "metrics": {"cycles": rtl, "macs": w.macs}})
    return spec, store, points, truth
