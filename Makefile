# make demo: a virtualenv with xhelpers, the example study run locally, its table.
# make test: test tools, the local SLURM cluster (when this machine can run it), the suite.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test lint typecheck pytest slurm-start slurm-stop slurm-status bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed pyproject.toml
	$(PIP) -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	mkdir -p demo
	cp run.py.example demo/run.py
	test -e demo/config.py || cp config.py.example demo/config.py
	cd demo && ../$(PY) run.py study -j2
	cd demo && ../$(PY) run.py study -l

# The SLURM tests need a real cluster. It is started when this machine can (root on
# Debian); otherwise those tests skip with the reason, unless XHELPERS_REQUIRE_SLURM=1
# (set by .ci/run), which makes a missing cluster fail the run.
slurm-start:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		bash scripts/local-slurm start || [ "$$XHELPERS_REQUIRE_SLURM" != 1 ]; \
	elif [ "$$XHELPERS_REQUIRE_SLURM" = 1 ]; then \
		echo "SLURM required but this machine cannot start it (needs root and apt)"; exit 1; \
	else \
		echo "not root on Debian: SLURM tests will be skipped"; \
	fi

slurm-stop:
	bash scripts/local-slurm stop

slurm-status:
	bash scripts/local-slurm status

lint: $(VENV)/.test-installed
	$(PY) -m ruff check xhelpers tests benchmarks
	$(PY) -m ruff format --check xhelpers tests benchmarks

typecheck: $(VENV)/.test-installed
	$(PY) -m mypy

pytest: $(VENV)/.test-installed
	$(PY) -m pytest

test: $(VENV)/.test-installed slurm-start lint typecheck pytest

bench: $(VENV)/.installed
	$(PY) benchmarks/local_overhead.py
	$(PY) benchmarks/skip_scan.py
	$(PY) benchmarks/startup.py

clean:
	rm -rf demo .pytest_cache .mypy_cache .ruff_cache
