# make demo: a virtualenv with xhelpers, the example study run locally, its table.
# make test: test tools, the local SLURM cluster (when this machine can run it), the suite.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test shells lint typecheck pytest slurm-start slurm-stop slurm-status bench clean test-versions

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

# zsh and fish: the completion tests drive real shells (bash is always there; the
# others are installed when this machine can, and their tests skip otherwise).
shells:
	@if ! command -v zsh >/dev/null || ! command -v fish >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zsh fish >/dev/null 2>&1 \
			|| { apt-get update -qq >/dev/null 2>&1 && \
			     DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zsh fish >/dev/null 2>&1; } \
			|| echo "could not install zsh and fish: their completion tests will skip"; \
		else echo "zsh/fish missing: their completion tests will skip"; fi; \
	fi

test: $(VENV)/.test-installed slurm-start shells lint typecheck pytest

# The suite without SLURM on every other Python this machine has (3.10+; pyenv's or
# python3.X on PATH), each in its own venv under .venvs/. Not part of `make test`:
# it doubles its time; run it before a release.
test-versions:
	@for v in 3.10 3.12 3.13; do \
		py=; for c in $$(ls -d $$HOME/.pyenv/versions/$$v.*/bin/python 2>/dev/null) \
			$$(command -v python$$v); do \
			if $$c -c 'import sys' 2>/dev/null; then py=$$c; break; fi; \
		done; \
		if [ -z "$$py" ]; then echo "python$$v: not found, skipped"; continue; fi; \
		echo "== python$$v ($$py)"; \
		$$py -m venv .venvs/$$v && .venvs/$$v/bin/python -m pip install --quiet -e '.[test]' \
		&& .venvs/$$v/bin/python -m pytest -q -p no:cacheprovider \
			--ignore=tests/test_slurm_cluster.py --ignore=tests/test_slurm_backend.py \
			--ignore=tests/test_slurm_run.py || exit 1; \
	done

bench: $(VENV)/.installed
	$(PY) benchmarks/local_overhead.py
	$(PY) benchmarks/skip_scan.py
	$(PY) benchmarks/startup.py

clean:
	rm -rf demo .venvs .pytest_cache .mypy_cache .ruff_cache
