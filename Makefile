# The two commands of the README: `make demo` and `make test` (Debian 12, as root).
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.cache/collections
export ANSIBLE_LOCAL_TEMP := $(CURDIR)/.cache/ansible-tmp
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help bootstrap demo test unit integration molecule sanity lint build

help:
	@echo "make demo   - build the namespace lab, apply the recipes, show which uplink each flow took"
	@echo "make test   - run every test (unit, integration in namespaces, molecule, sanity, lint)"

bootstrap:
	@./scripts/bootstrap

demo: bootstrap
	$(PY) -m tests.lab.demo

test: bootstrap
	$(MAKE) --no-print-directory unit integration molecule sanity lint
	@echo "make test: all suites passed"

unit:
	$(PY) -m pytest -p no:cacheprovider tests/unit

integration:
	$(PY) -m pytest -p no:cacheprovider tests/integration

molecule:
	@./scripts/molecule-all

sanity:
	@./scripts/sanity

lint:
	ansible-lint --profile production

build:
	@./scripts/build
