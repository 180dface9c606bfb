# xtalscreen: two commands on a fresh machine.
#   make demo   set up .venv and run the main job end to end on embedded defaults
#   make test   set up .venv and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
DEMO_OUT ?= demo_out

.PHONY: demo test venv bench clean browser

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/xtalscreen demo --out $(DEMO_OUT)

test: $(STAMP) browser
	$(PY) -m pytest $(PYTEST_ARGS)

# The web app's end-to-end test drives a real headless Chromium (Debian's chromium and
# chromium-driver). Installed here when missing and we are root with apt; otherwise that test
# skips with the reason (and fails under CI=true).
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian chromium + chromium-driver for the browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium not found and cannot install it: the browser test will skip"; fi; }

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) bench_out .pytest_cache
