# airflow-backup developer and CI entry points.  `make help` lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp

# External binaries the test suite needs, and the Debian package that provides each.
# To add one: append the binary to APT_TOOLS and define APT_PACKAGE.<binary>.
APT_TOOLS := restic
APT_PACKAGE.restic := restic
# Data-source tests: PostgreSQL and MariaDB client programs (the servers run on the machine).
APT_TOOLS += pg_dump pg_restore pg_dumpall psql pgbench mariadb-dump mariadb
APT_PACKAGE.pg_dump := postgresql-client
APT_PACKAGE.pg_restore := postgresql-client
APT_PACKAGE.pg_dumpall := postgresql-client
APT_PACKAGE.psql := postgresql-client
APT_PACKAGE.pgbench := postgresql-contrib
APT_PACKAGE.mariadb-dump := mariadb-client
# Browser tests of the Airflow UI: Debian's chromium, driven by Playwright (no downloaded browser).
APT_TOOLS += chromium
APT_PACKAGE.chromium := chromium
# `generate` tests: man pages render with man(1) (groff underneath); zsh and fish check their
# completion scripts.
APT_TOOLS += man groff zsh fish
APT_PACKAGE.man := man-db
APT_PACKAGE.groff := groff-base
APT_PACKAGE.mariadb := mariadb-client
# Azure Blob tests: Azurite (Microsoft's emulator) comes from npm, into $(NODE_TOOLS) (inside the
# venv: ignored by git, removed by make clean); npm (with Node.js) from Debian if missing.
APT_TOOLS += npm
APT_PACKAGE.npm := npm
NODE_TOOLS := $(VENV)/node
AZURITE_VERSION := 3.35.0
AZURITE := $(NODE_TOOLS)/node_modules/.bin/azurite-blob

# Test processes (pytest-xdist): the suite mostly waits for subprocesses and servers, so two
# workers on two cores take the main suite from 8 to about 5 minutes. Each worker gets whole
# test files.
TEST_WORKERS ?= auto
PYTEST_PARALLEL = -n $(TEST_WORKERS) --dist loadfile

# make bench: dataset size, repetitions (each figure is the median), tools, extra run.py options
# (e.g. BENCH_ARGS=--keep); results go to bench/results.{json,md,png}.
BENCH_SIZE ?= 1G
BENCH_REPEAT ?= 1
BENCH_TOOLS ?= ours,restic,borg
BENCH_ARGS ?=

PG_REGRESS := /usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
DEB_SRC := /etc/apt/sources.list.d/airflow-backup-deb-src.sources
TOOL_PAIRS := $(foreach b,$(APT_TOOLS),$(b):$(or $(APT_PACKAGE.$(b)),$(b)))

# Airflow lives in its own venv (only the Airflow-metadata source tests call its CLI), so the
# main venv stays light. psycopg2/asyncpg let it use a PostgreSQL metadata database.
AIRFLOW_VENV := .venv-airflow
AIRFLOW_PIP_SPEC := apache-airflow==3.3.2 apache-airflow-providers-celery 'celery[redis]<5.7' psycopg2-binary asyncpg \
  'playwright>=1.49'


.PHONY: help venv tools airflow-venv lint test test-fast demo airflow bench bench-s3 bench-scale clean

help:
	@echo "make venv       create $(VENV) and install the project with its test extras"
	@echo "make tools      make sure external tools are installed: $(APT_TOOLS)"
	@echo "make airflow-venv  create $(AIRFLOW_VENV) with Airflow (for the Airflow-metadata tests)"
	@echo "make lint       ruff + mypy"
	@echo "make test       lint, then the whole pytest suite (slow tests included)"
	@echo "make test-fast  pytest -m 'not slow'"
	@echo "make demo       back up, list, restore and verify a sample tree (scripts/demo.sh)"
	@echo "make airflow    airflow standalone with the example DAGs (UI on :8080; scripts/airflow.sh)"
	@echo "make bench      time backup/restore against restic and borg (docs/performance.md);"
	@echo "                BENCH_SIZE=$(BENCH_SIZE) BENCH_REPEAT=$(BENCH_REPEAT) BENCH_TOOLS=$(BENCH_TOOLS) BENCH_ARGS=..."
	@echo "make bench-s3   airflow-backup vs restic on a local moto S3 server behind a latency proxy"
	@echo "                (bench/s3_bench.py, bench/latency_proxy.py); BENCH_S3_MB=$(BENCH_S3_MB)"
	@echo "                BENCH_S3_LATENCY_MS=$(BENCH_S3_LATENCY_MS) BENCH_S3_REPEAT=$(BENCH_S3_REPEAT)"
	@echo "make bench-scale  scale figures vs restic: 1M small files, a 20 GiB sparse file, a 10M-blob"
	@echo "                index, 10k snapshots (bench/scale_bench.py; long); BENCH_SCALE_ARGS=$(BENCH_SCALE_ARGS)"
	@echo "make clean      remove $(VENV), caches, build output and ./demo"

venv: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install whenever pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test]'
	touch $(STAMP)

airflow-venv: $(AIRFLOW_VENV)/.stamp $(AIRFLOW_VENV)/.stamp-project

$(AIRFLOW_VENV)/.stamp: Makefile
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --disable-pip-version-check -q $(AIRFLOW_PIP_SPEC)
	touch $@

# The project itself (the provider and its tests) in the Airflow venv; re-installed whenever
# pyproject.toml changes.
$(AIRFLOW_VENV)/.stamp-project: pyproject.toml $(AIRFLOW_VENV)/.stamp
	$(AIRFLOW_VENV)/bin/python -m pip install --disable-pip-version-check -q \
	  -e '.[test,airflow]' $(AIRFLOW_PIP_SPEC)
	touch $@

tools:
	@missing_pkgs=""; \
	for pair in $(TOOL_PAIRS); do \
	  bin=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v "$$bin" >/dev/null 2>&1 || missing_pkgs="$$missing_pkgs $$pkg"; \
	done; \
	if [ -n "$$missing_pkgs" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "tools: installing$$missing_pkgs"; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing_pkgs; \
	fi; \
	still_missing=""; \
	for pair in $(TOOL_PAIRS); do \
	  bin=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v "$$bin" >/dev/null 2>&1 || still_missing="$$still_missing $$bin(apt package $$pkg)"; \
	done; \
	if [ -n "$$still_missing" ]; then \
	  if [ "$${CI:-}" = true ]; then \
	    echo "tools: ERROR: missing on this CI machine:$$still_missing." >&2; \
	    echo "tools: CI must have them (run make tools as root with apt-get available)." >&2; \
	    exit 1; \
	  fi; \
	  echo "tools: WARNING: missing:$$still_missing; tests that need them will be skipped." >&2; \
	  echo "tools: install them as root (make tools) to run the whole suite." >&2; \
	else \
	  for pair in $(TOOL_PAIRS); do echo "tools: $${pair%%:*} -> $$(command -v $${pair%%:*})"; done; \
	fi
	@# The PostgreSQL regression database test builds pg_regress's database from Debian's
	@# postgresql-15 source package (apt-get source needs a deb-src entry) with the
	@# server headers and pgxs's pg_regress from postgresql-server-dev-15.
	@if { [ ! -x $(PG_REGRESS) ] || [ ! -f $(DEB_SRC) ]; } && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "tools: installing postgresql-server-dev-15 dpkg-dev and a deb-src entry"; \
	  printf '%s\n' 'Types: deb-src' 'URIs: http://deb.debian.org/debian' \
	    'Suites: bookworm bookworm-updates' 'Components: main' \
	    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
	    > $(DEB_SRC); \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-server-dev-15 dpkg-dev; \
	fi; \
	if [ -x $(PG_REGRESS) ]; then echo "tools: pg_regress -> $(PG_REGRESS)"; \
	elif [ "$${CI:-}" = true ]; then echo "tools: ERROR: $(PG_REGRESS) missing" >&2; exit 1; \
	else echo "tools: WARNING: $(PG_REGRESS) missing; the regression-database test is skipped" >&2; fi
	@# The GCS emulator is a Python package (the test extra); Azurite is installed here.
	@if [ ! -x $(AZURITE) ] && command -v npm >/dev/null 2>&1; then \
	  echo "tools: installing azurite@$(AZURITE_VERSION) into $(NODE_TOOLS)"; \
	  npm install --prefix $(NODE_TOOLS) --no-audit --no-fund --loglevel=error \
	    azurite@$(AZURITE_VERSION); \
	fi; \
	if [ -x $(AZURITE) ]; then echo "tools: azurite-blob -> $(AZURITE)"; \
	elif [ "$${CI:-}" = true ]; then echo "tools: ERROR: $(AZURITE) missing (npm failed?)" >&2; exit 1; \
	else echo "tools: WARNING: $(AZURITE) missing; the Azure Blob tests are skipped" >&2; fi

lint: venv airflow-venv
	$(BIN)/ruff check src tests examples
	@# The provider is the only code importing Airflow, which lives in $(AIRFLOW_VENV):
	@# the main venv checks everything else, the Airflow venv checks the provider.
	$(BIN)/mypy --exclude '^src/airflow_backup/provider/'
	$(AIRFLOW_VENV)/bin/mypy src/airflow_backup/provider

test: venv tools airflow-venv lint
	$(BIN)/pytest -q $(PYTEST_PARALLEL)
	$(AIRFLOW_VENV)/bin/pytest tests/airflow -q $(PYTEST_PARALLEL) -p no:cacheprovider \
	  -o addopts="-ra --strict-markers --durations=10"

test-fast: venv tools airflow-venv
	$(BIN)/pytest -q -m "not slow" $(PYTEST_PARALLEL)
	$(AIRFLOW_VENV)/bin/pytest tests/airflow -q -m "not slow" $(PYTEST_PARALLEL) \
	  -o addopts="-ra --strict-markers --durations=10"

demo: venv airflow-venv
	bash scripts/demo.sh

airflow: venv airflow-venv
	bash scripts/airflow.sh

bench: venv
	@$(BIN)/python -c 'import matplotlib' 2>/dev/null || \
	  $(BIN)/python -m pip install --disable-pip-version-check -q matplotlib || \
	  echo "bench: matplotlib unavailable; results.png will be skipped" >&2
	$(BIN)/python bench/run.py --size $(BENCH_SIZE) --repeat $(BENCH_REPEAT) \
	  --tools $(BENCH_TOOLS) $(BENCH_ARGS)

# make bench-s3: dataset size (MB), added latency each way per request (run beside 0 ms) and
# repetitions (each figure is the median). A benchmark: not part of `make test`.
BENCH_S3_MB ?= 200
BENCH_S3_LATENCY_MS ?= 30
BENCH_S3_REPEAT ?= 3

bench-s3: venv tools
	$(BIN)/python bench/s3_bench.py --size-mb $(BENCH_S3_MB) \
	  --latency-ms $(BENCH_S3_LATENCY_MS) --repeat $(BENCH_S3_REPEAT)

# make bench-scale: scale_bench.py options, e.g. BENCH_SCALE_ARGS="--files 100000 --cases files"
# (defaults: --files 1000000 --big-gib 20 --blobs 10000000 --snapshots 10000). Results go to
# bench/scale_results.json. A benchmark: not part of `make test`.
BENCH_SCALE_ARGS ?=

bench-scale: venv tools
	$(BIN)/python bench/scale_bench.py --output bench/scale_results.json $(BENCH_SCALE_ARGS)

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) build dist demo .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./.git -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -type d \
	  -prune -exec rm -rf {} +
