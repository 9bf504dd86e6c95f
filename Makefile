# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# The venv is (re)built only when requirements.txt or pyproject.toml change.
PYTHON ?= python3
# extra demo flags, e.g. make demo DEMO_ARGS="--minutes 3"
DEMO_ARGS ?=
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install browser test test-fast demo bench clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Debian's headless Chromium and its driver, for the web page's browser tests. Best effort: where
# they cannot be installed (no root, no apt-get, no mirror) those tests skip and say why.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing chromium chromium-driver (Debian) for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
	    >/tmp/pokemon-diffusion-browser.log 2>&1 \
	  || echo "make browser: could not install chromium (see /tmp/pokemon-diffusion-browser.log); the browser tests will be skipped"; \
	else echo "make browser: not root or no apt-get: the browser tests will be skipped (apt-get install chromium chromium-driver)"; fi

test: $(STAMP) browser
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

demo: $(STAMP)
	$(VENV)/bin/pokemon-diffusion demo --out outputs/demo $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf build dist *.egg-info .pytest_cache
