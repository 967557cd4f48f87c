# The two commands a newcomer needs:
#   make demo   set up and run the proxy with its built-in demo upstream on http://127.0.0.1:8000
#   make test   set up and run the whole test suite (lint, types, unit, API and end-to-end tests)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# instructor pins an older openai than the project's: its e2e client runs in a venv of its own.
INSTRUCTOR_VENV ?= .venv-instructor
INSTRUCTOR_STAMP := $(INSTRUCTOR_VENV)/.installed

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m compileall -q app  # as pip does for an installed package: a faster start
	touch $(STAMP)

$(INSTRUCTOR_STAMP): tests/clients/instructor-requirements.txt
	$(PYTHON) -m venv $(INSTRUCTOR_VENV)
	$(INSTRUCTOR_VENV)/bin/pip install --quiet -r tests/clients/instructor-requirements.txt
	touch $(INSTRUCTOR_STAMP)

install: $(STAMP) $(INSTRUCTOR_STAMP)

demo: $(STAMP)
	$(BIN)/custom-llm-proxy serve --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/mypy

# The container checks run before pytest, so that pytest's summary closes the output.
test: lint container-test $(INSTRUCTOR_STAMP)
	$(BIN)/pytest

clean:
	rm -rf $(VENV) $(INSTRUCTOR_VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache

# The benchmark (bench/README.md; needs `apt-get install nginx wrk`): `make bench` runs the full
# matrix (about 3 minutes), `make bench-smoke` a few seconds of it. Options: BENCH_ARGS='--workers 2'.
BENCH_ARGS ?=

.PHONY: bench bench-smoke bench-inflight bench-instructions

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-smoke: $(STAMP)
	$(BIN)/python bench/run.py --smoke $(BENCH_ARGS)

# 4,096 requests in flight on a 2 s upstream, direct and through the proxy (bench/inflight.py).
bench-inflight: $(STAMP)
	$(BIN)/python bench/inflight.py $(BENCH_ARGS)

# Instructions per request under valgrind, ours and a commit's (bench/instructions.py; needs
# `apt-get install valgrind nginx`), e.g. BENCH_ARGS='--compare 03ea53c'.
bench-instructions: $(STAMP)
	$(BIN)/python bench/instructions.py $(BENCH_ARGS)

# The container checks (tests/container): the wheel from `python -m build` serves from a fresh venv;
# the Dockerfile's image builds, runs and passes its checks; docker-compose.yml comes up with
# podman-compose and the README's curl works; the replicated and monitoring profiles come up where
# their images can be had (else SKIP with the reason: tests/unit/test_deploy_files.py checks them).
# Needs root for podman (installed with apt-get when missing; skipped with the reason where it
# cannot be). A few minutes; STEPS='wheel image compose profiles' picks steps.
STEPS ?=

.PHONY: container-test

container-test: $(STAMP)
	@if [ "$${SKIP_CONTAINER_TEST:-}" = 1 ]; then \
		echo "container-test: SKIPPED (SKIP_CONTAINER_TEST=1)"; \
	else \
		timeout --kill-after=30 1200 $(BIN)/python -m tests.container $(STEPS); \
	fi

# The fault soak (bench/README.md): OpenAI SDK clients against a model with a healthy, a flapping
# and a hanging deployment, one killed and restarted mid-run. CI runs an 8 s form
# (tests/bench/test_soak.py); by hand: `make soak` (5 minutes), SOAK_ARGS='--duration 60'.
SOAK_ARGS ?= --duration 300 --clients 64

.PHONY: soak

soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)
