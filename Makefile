# make demo: a virtualenv with xhelpers, the example study run locally, its table.
# make test: test tools, the local SLURM cluster (when this machine can run it), the suite.
# Both install the versions pinned, with hashes, in requirements/ (make lock refreshes them);
# make test-latest runs the suite against the newest releases instead.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
# The locks: every package and version the venv gets, with hashes, for Python 3.10+.
# runtime.txt: xhelpers' dependencies (make demo); test.txt: those, the same versions,
# and the test and docs tools (make test). xhelpers itself then goes in without deps.
# uv installs them (measured here: 13 s for the test lock where pip took 87 s); uv itself
# comes hashed from requirements/uv.txt, in its own venv.
LOCK         := requirements/test.txt
RUNTIME_LOCK := requirements/runtime.txt
UV           := .venv-uv/bin/uv
# --compile-bytecode: as pip does. Without it (uv's default), a machine that sets
# PYTHONDONTWRITEBYTECODE (this one does) compiles every import from source in every
# process: each run.py, test subprocess and SLURM task paid ~0.2 s for it.
UV_PIP       := $(UV) pip install --quiet --compile-bytecode --python

.PHONY: demo test shells browser ssh-tools lint typecheck pytest slurm-start slurm-stop slurm-status bench clean test-versions \
	lock lock-upgrade test-latest soak

$(UV): requirements/uv.txt
	$(PYTHON) -m venv .venv-uv
	.venv-uv/bin/python -m pip install --quiet --disable-pip-version-check \
		--require-hashes -r requirements/uv.txt
	touch $@

# Each stamp depends on its lock: a changed lock reinstalls (pins move up or down).
$(VENV)/.installed: $(RUNTIME_LOCK) pyproject.toml | $(UV)
	$(PYTHON) -m venv $(VENV)
	$(UV_PIP) $(PY) --require-hashes -r $(RUNTIME_LOCK)
	$(UV_PIP) $(PY) --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed $(LOCK) | $(UV)
	$(UV_PIP) $(PY) --require-hashes -r $(LOCK)
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
	$(PY) -m ruff check xhelpers tests benchmarks scripts
	$(PY) -m ruff format --check xhelpers tests benchmarks scripts
	$(VENV)/bin/lint-imports

# The documentation site (mkdocs.yml, docs/) into site/. Strict: a broken link or anchor,
# a page missing from the nav, an unreadable docstring or a resource from the internet
# fails it. make test builds it too; tests/test_docs.py runs every example in it.
.PHONY: docs
docs: $(VENV)/.test-installed
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -d site

typecheck: $(VENV)/.test-installed
	$(PY) -m mypy

# The project's own modules compiled first (the installed ones are, see UV_PIP): the
# suite starts hundreds of Python processes, each of which would compile them again.
pytest: $(VENV)/.test-installed
	$(PY) -m compileall -q xhelpers tests >/dev/null
	$(PY) -m pytest

# The soak test for minutes: runners on one group under random SIGKILLs (tests/test_soak.py).
# make pytest runs it short; XHELPERS_SOAK_SEED=<seed> replays a failed run's kills.
soak: $(VENV)/.test-installed
	XHELPERS_SOAK=long $(PY) -m pytest -m soak -v -s -p no:cacheprovider tests/test_soak.py

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

# The dashboard's browser tests drive Debian's chromium through chromium-driver (Selenium,
# pinned in the test lock); installed here when this machine can. Without them the tests
# skip, except in CI (CI=true), where they fail.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
			|| { apt-get update -qq >/dev/null 2>&1 && \
			     DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; } \
			|| echo "could not install chromium: the dashboard's browser tests will skip"; \
		else echo "chromium/chromium-driver missing: the dashboard's browser tests will skip"; fi; \
	fi

# sshd and rsync: the remote-mode tests (tests/test_remote.py) run a real OpenSSH server on
# 127.0.0.1; installed when this machine can, and those tests skip otherwise (fail in CI).
ssh-tools:
	@if [ ! -x /usr/sbin/sshd ] || ! command -v rsync >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server rsync >/dev/null 2>&1 \
			|| { apt-get update -qq >/dev/null 2>&1 && \
			     DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server rsync >/dev/null 2>&1; } \
			|| echo "could not install openssh-server and rsync: the remote tests will skip"; \
		else echo "sshd/rsync missing: the remote tests will skip"; fi; \
	fi

test: $(VENV)/.test-installed slurm-start shells browser ssh-tools lint typecheck docs pytest

# The suite without SLURM on every other Python this machine has (3.10+; pyenv's or
# python3.X on PATH), each in its own venv under .venvs/. Not part of `make test`:
# it doubles its time; run it before a release.
test-versions: $(UV)
	@for v in 3.10 3.12 3.13; do \
		py=; for c in $$(ls -d $$HOME/.pyenv/versions/$$v.*/bin/python 2>/dev/null) \
			$$(command -v python$$v); do \
			if $$c -c 'import sys' 2>/dev/null; then py=$$c; break; fi; \
		done; \
		if [ -z "$$py" ]; then echo "python$$v: not found, skipped"; continue; fi; \
		echo "== python$$v ($$py)"; \
		$$py -m venv .venvs/$$v \
		&& $(UV_PIP) .venvs/$$v/bin/python --require-hashes -r $(LOCK) \
		&& $(UV_PIP) .venvs/$$v/bin/python --no-deps --no-build-isolation -e . \
		&& .venvs/$$v/bin/python -m pytest -q -p no:cacheprovider \
			--ignore-glob='tests/test_slurm_*' || exit 1; \
	done

# make lock: rewrite the locks from pyproject.toml (and requirements/*.in), keeping every
# pin that still fits; make lock-upgrade: every package, uv too, to its newest release; one
# package: make lock LOCK_ARGS='--upgrade-package NAME'. Commit requirements/ afterwards.
# uv resolves for every Python 3.10+ and platform at once (--universal).
LOCK_ARGS  ?=
UV_COMPILE  = $(UV) pip compile --quiet --universal --python-version 3.10 --generate-hashes \
	--custom-compile-command 'make lock'

lock: $(UV)
	$(UV_COMPILE) $(LOCK_ARGS) pyproject.toml requirements/build.in --extra test -o $(LOCK)
	$(UV_COMPILE) pyproject.toml requirements/build.in -c $(LOCK) -o $(RUNTIME_LOCK)
	$(UV_COMPILE) $(LOCK_ARGS) requirements/uv.in -o requirements/uv.txt

lock-upgrade:
	$(MAKE) lock LOCK_ARGS=--upgrade

# The suite against the newest release of every dependency and tool, ignoring the lock, in
# its own venv, upgraded at each run: upstream breakage shows up here, as this known job,
# and not in a fresh clone's make test. Not part of make test; the versions it ran with
# are in .venv-latest/versions.txt.
LATEST := .venv-latest
test-latest: slurm-start shells ssh-tools
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --disable-pip-version-check \
		--upgrade --upgrade-strategy eager -e '.[test]'
	$(LATEST)/bin/python -m pip list --format=freeze --exclude-editable > $(LATEST)/versions.txt
	$(LATEST)/bin/python -m pytest

# All ten benchmarks (docs/guide/speed.md); the slurm_* ones need a SLURM cluster
# (bash scripts/local-slurm start) and is skipped, saying so, where sbatch is missing.
bench: $(VENV)/.installed
	$(PY) -m compileall -q xhelpers >/dev/null
	$(PY) benchmarks/local_overhead.py
	$(PY) benchmarks/skip_scan.py
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/status_list.py
	$(PY) benchmarks/results_table.py
	$(PY) benchmarks/pipeline_plan.py
	$(PY) benchmarks/serve_scale.py
	@if [ -x /usr/sbin/sshd ] && command -v rsync >/dev/null; then $(PY) benchmarks/remote_overhead.py; \
	else echo "benchmarks/remote_overhead.py skipped: no sshd or rsync (make ssh-tools)"; fi
	@if command -v sbatch >/dev/null; then $(PY) benchmarks/slurm_submit.py && \
		$(PY) benchmarks/slurm_pipeline.py && $(PY) benchmarks/slurm_throughput.py; \
	else echo "benchmarks/slurm_*.py skipped: no sbatch (bash scripts/local-slurm start)"; fi

clean:
	rm -rf demo site .venvs .venv-latest .venv-uv .pytest_cache .mypy_cache .ruff_cache test-artifacts
