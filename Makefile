# The two commands of the README: `make test` and `make demo`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo lint format clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests examples benchmarks
	$(VENV)/bin/ruff format --check src tests examples benchmarks
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) examples/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff format src tests examples benchmarks
	$(VENV)/bin/ruff check --fix src tests examples benchmarks

clean:
	rm -rf $(VENV) .pytest_cache

# Benchmarks (benchmarks/bench.py writes benchmarks/RESULTS.md and prints it).
# `bench` needs no peer; it merges the figures of the last `bench-peers` run.
.PHONY: bench bench-peers screenshots

bench: $(STAMP)
	$(PY) -m compileall -q src  # as an installed package is: no compiling inside the timings
	$(PY) benchmarks/bench.py
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/styles.py
	$(PY) benchmarks/caching.py
	$(PY) benchmarks/ui.py
	$(PY) benchmarks/store_rate.py
	$(PY) benchmarks/limits.py $(if $(wildcard /usr/lib/postgresql/15/bin/initdb),--postgres)

bench-peers: $(STAMP)
	PYTHON=$(PYTHON) bash benchmarks/peers/setup.sh
	$(PY) benchmarks/bench.py --peers

# The pictures in docs/ui.md, taken by the browser test.
screenshots: $(STAMP)
	mkdir -p docs/images
	HEADRACE_UI_SCREENSHOTS=$(CURDIR)/docs/images $(PY) -m pytest -q tests/test_server.py -k browser
	HEADRACE_UI_SCREENSHOTS=$(CURDIR)/docs/images $(PY) -m pytest -q tests/test_serving.py -k chromium
	HEADRACE_UI_SCREENSHOTS=$(CURDIR)/docs/images $(PY) -m pytest -q tests/test_tag_limits.py -k chromium
