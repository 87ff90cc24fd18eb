# civicwatch developer tasks. `make test` is what CI runs (through .ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
EXTRAS ?= edge,server,dev
# Reinstalled only when the dependencies change.
VENV_STAMP := $(VENV)/.civicwatch-installed

BROKER_HOST := 127.0.0.1
BROKER_PORT := 1883
BROKER_CONF := deploy/mosquitto/dev.conf
# Debian installs mosquitto in /usr/sbin, which a normal user's PATH may lack.
export PATH := $(PATH):/usr/sbin

.PHONY: deps services venv broker test lint demo format

# The Debian packages the tests need (broker, browser, Chinese font, docker-compose, ...): installed
# when run as root, otherwise one line names them and make stops.
deps:
	@deploy/system-deps.sh

# PostgreSQL for the tests that run against it: started when installed but not answering.
services:
	@if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then \
		if ! command -v pg_ctlcluster >/dev/null || [ -z "$$(ls /etc/postgresql 2>/dev/null)" ]; then \
			echo "make: PostgreSQL does not answer on 127.0.0.1:5432 and is not installed (apt-get install postgresql)" >&2; exit 1; \
		fi; \
		echo "make: starting PostgreSQL"; \
		pg_ctlcluster --skip-systemctl-redirect "$$(ls /etc/postgresql | head -n 1)" main start; \
	fi

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "make: no python3.11 found; install Python 3.11 or set PYTHON=" >&2; exit 1; fi
	@if [ ! -x "$(PY)" ]; then echo "make: creating $(VENV) with $(PYTHON)"; "$(PYTHON)" -m venv "$(VENV)"; fi
	"$(PY)" -m pip install -e '.[$(EXTRAS)]'
	@touch "$@"

# Start the development broker unless one already answers on 127.0.0.1:1883.
broker:
	@if (exec 3<>/dev/tcp/$(BROKER_HOST)/$(BROKER_PORT)) 2>/dev/null; then \
		echo "make: Mosquitto already answers on $(BROKER_HOST):$(BROKER_PORT)"; \
	else \
		if ! command -v mosquitto >/dev/null; then \
			echo "make: mosquitto is not installed: apt-get install mosquitto" >&2; exit 1; \
		fi; \
		mkdir -p var/mosquitto; \
		if [ "$$(id -u)" = 0 ] && id -u mosquitto >/dev/null 2>&1; then \
			chown mosquitto var/mosquitto; \
		fi; \
		echo "make: starting Mosquitto ($(BROKER_CONF), log in var/mosquitto/)"; \
		mosquitto -d -c $(BROKER_CONF); \
		for _ in $$(seq 50); do \
			if (exec 3<>/dev/tcp/$(BROKER_HOST)/$(BROKER_PORT)) 2>/dev/null; then exit 0; fi; \
			sleep 0.1; \
		done; \
		echo "make: Mosquitto did not start; see var/mosquitto/mosquitto.log" >&2; exit 1; \
	fi

test: deps services venv broker
	$(VENV)/bin/pytest -q -n 2 --durations=30
	@$(MAKE) --no-print-directory lint

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: venv broker
	$(VENV)/bin/civicwatch demo --config configs/example.yaml
