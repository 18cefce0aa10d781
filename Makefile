# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: demo test bench install clean screenshot

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

# docs/dashboard.png: the TensorBoard UI on a demo run, with headless Chromium (apt-get install -y chromium);
# `make screenshot LOGDIR=runs` reuses a finished demo run instead of running a new one.
screenshot: $(VENV)/.installed-plots
	$(PY) scripts/screenshot_dashboard.py $(if $(LOGDIR),--logdir $(LOGDIR))

bench: $(VENV)/.installed-test
	$(PY) benchmarks/bench_fit.py
	$(PY) benchmarks/bench_overhead.py
	$(PY) benchmarks/bench_rule_cost.py
	$(PY) benchmarks/bench_stopping.py
	$(PY) benchmarks/bench_stopping.py --holdout
	$(PY) benchmarks/bench_stopping.py --spread
	$(PY) benchmarks/bench_calibration.py
	$(PY) benchmarks/bench_conditioning.py
	$(PY) benchmarks/bench_calibrated_stop.py
	$(PY) benchmarks/bench_noise.py
	$(PY) benchmarks/bench_forecast.py
	$(PY) benchmarks/bench_forecast.py --laws mpl --shipped-prior
	$(PY) benchmarks/bench_forecast.py --horizon
	$(PY) benchmarks/bench_cooldown.py
	$(PY) benchmarks/bench_sweep.py

clean:
	rm -rf $(VENV) runs build *.egg-info
