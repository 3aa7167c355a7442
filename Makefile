# marketchain: `make devnet` runs the demo network, `make test` runs the whole suite.
# Both create the virtualenv .venv and install everything on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup devnet test lint unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

devnet: setup
	$(BIN)/marketchain devnet $(DEVNET_ARGS)

# Three pytest workers on a 2-core machine: end-to-end tests spend part of their time
# waiting on block times and restarts, which a third worker fills (8:21 against 9:49 with
# two, measured after issue 15; docs/performance.md, "The test suite's wall time").
TEST_WORKERS ?= 3

test: setup lint
	$(BIN)/python -m pytest -q -ra -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .

unit: setup
	$(BIN)/python -m pytest -q -m "not integration"

bench: setup
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info

# Soak: a testnet under load with random faults (docs/faults.md); SOAK_ARGS="--duration 1800 --seed 42".
.PHONY: soak
soak: setup
	$(BIN)/python bench/soak.py $(SOAK_ARGS)
