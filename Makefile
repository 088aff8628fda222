# Two entry points: `make demo` and `make test`. Each creates .venv and installs on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean browser wheel fuzz

# pyproject.toml declares compatible ranges; constraints.txt is the exact, tested set.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch would resolve the multi-GB CUDA build.
	$(BIN)/pip install -c constraints.txt torch==2.13.0
	$(BIN)/pip install -c constraints.txt -e ".[dev,bench]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sarcrop demo --out runs/demo

test: $(STAMP) browser
	$(BIN)/python -m pytest -n 2 --dist loadfile tests

# The report is checked in a real headless browser; install Debian's chromium when possible.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends chromium >/dev/null) ; } \
		|| echo "chromium is not installed: the browser test of the report will be skipped"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --out runs/bench

# Fuzzing at depth, outside `make test`: 500 corrupted inputs through prepare, predict, finetune.
fuzz: $(STAMP)
	nice $(BIN)/python fuzz/run.py --cases 500

# The sdist and the wheel in dist/, built by `python -m build` in its own environment.
wheel:
	$(PYTHON) -m venv build/venv
	build/venv/bin/pip install -q build
	build/venv/bin/python -m build --outdir dist .

clean:
	rm -rf $(VENV) runs build dist
