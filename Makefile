# Two entry points: `make demo` and `make test`. Each creates .venv and installs on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch would resolve the multi-GB CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev,bench]"
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

clean:
	rm -rf $(VENV) runs
