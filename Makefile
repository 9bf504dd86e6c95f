# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# The venv is (re)built only when requirements.txt, setup.cfg or pyproject.toml change.
PYTHON ?= python3
# extra demo flags, e.g. make demo DEMO_ARGS="--minutes 3"
DEMO_ARGS ?=
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test test-fast demo bench clean

install: $(STAMP)

$(STAMP): requirements.txt setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

demo: $(STAMP)
	$(VENV)/bin/pokemon-diffusion demo --out outputs/demo $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf build dist *.egg-info .pytest_cache
