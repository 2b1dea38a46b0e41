"""The co-design loop: sweep accelerator configs from YAML, measure them, find the Pareto front.

    spec = load_sweep("configs/sweeps/demo.yaml")     # validated up front (SweepError, one line)
    summary = run_sweep(spec, jobs=2)                  # model / rtl / synth -> SQLite store
    # sweeps/demo/: results.sqlite, results.csv, pareto.csv, *.png, report.html

| module | holds |
|---|---|
| `spec` | the sweep file: axes, workloads, evaluators, objectives, constraints, search, limits |
| `search` | grid, random and Optuna point selection; model screening and promotion to rtl/synth |
| `evaluators` | one measurement: model, rtl, synth, func (never raises; failures are outcomes) |
| `synth` | Yosys `synth_ecp5` + nextpnr-ecp5 area and Fmax, cached on disk |
| `executors` | local process pool, Dask distributed |
| `store` | the SQLite results store: claims, results, attempts, sweeps |
| `sweep` | the loop that ties them together |
| `derived`, `pareto` | derived metrics (from `systolab.metrics`) and Pareto fronts |
| `results` | a sweep's results read back from the store: rows, front, failures, calibration, RTL time |
| `plots` | the PNG plots (Pareto fronts, utilization, calibration) |
| `report` | results.csv, pareto.csv, plots and report.html (`templates/report.html.j2`); the front for the terminal |
| `cli` | `systolab sweep` and `systolab report` |
"""

from .spec import SweepError, SweepSpec, load_sweep
from .sweep import SweepSummary, run_sweep

__all__ = ["SweepError", "SweepSpec", "load_sweep", "run_sweep", "SweepSummary"]
