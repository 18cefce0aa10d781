# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: demo test bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"

$(VENV)/.installed-%: pyproject.toml | $(PY)
	$(BIN)/pip install -q -e ".[$*]"
	touch $@

install: $(VENV)/.installed-test

demo: $(VENV)/.installed-plots
	$(PY) -m lightning_scaling.demo --out runs

test: $(VENV)/.installed-test
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(VENV)/.installed-test
	$(PY) benchmarks/bench_fit.py
	$(PY) benchmarks/bench_overhead.py

clean:
	rm -rf $(VENV) runs build *.egg-info
