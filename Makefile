# The README's commands are the source of truth; these targets are what they run.
#   make install   - create .venv (Python 3.12) with the embedded model extra
#   make test      - create .venv with the test extras and run every test (unit + integration)
#   make lint      - ruff and mypy (strict on src/)
#   make bench     - the benchmarks in bench/, (a)-(e) in ~30 min (see docs/performance.md)
#   make bench-frontier - (e) on 50 problems (~65 min)
#   make bench-sim - (a)-(c) and scale-out on a simulated GPU server (vLLM, Qwen3-32B, one H100), <= 15 min on 2 cores
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
	$(VENV)/bin/mypy

.PHONY: bench
bench: dev
	# (a)-(e), sized for about 30 minutes on 2 cores; (e) on 4 problems here, on 50 in bench-frontier.
	cd bench && ../$(PY) concurrency.py --problems 4 && ../$(PY) overhead.py && ../$(PY) throughput.py --problems 8 \
	  && ../$(PY) prefix_cache.py --problems 4 && ../$(PY) frontier.py --limit 4 --out ../bench-results/frontier-4

.PHONY: bench-frontier
bench-frontier: dev
	# (e) as the issue sizes it: 5 configurations x 50 gsm8k_dev problems, about 65 minutes on 2 cores.
	cd bench && ../$(PY) frontier.py --limit 50 --out ../bench-results/frontier-50

.PHONY: bench-sim
bench-sim: dev
	# (a)-(c) against bench/gpu_sim.py, a simulated vLLM server (Qwen3-32B-FP8 on one H100); see docs/performance.md.
	# Then scale-out (~2 min): runs per minute with one and with two `scale serve` workers (PostgreSQL and Redis on
	# 127.0.0.1, as for make test); see docs/deploy.md.
	cd bench && ../$(PY) simulated.py && ../$(PY) scale_out.py
