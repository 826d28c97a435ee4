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
	@echo "              (each also alone: make unit|integration|molecule|sanity|lint; see docs/development.md)"
	@echo "make build  - build the collection tarball into .build/"

bootstrap:
	@./scripts/bootstrap

demo: bootstrap
	$(PY) -m tests.lab.demo

# Each suite in turn, stopping at the first that fails; the time of each is
# printed, as the whole run must stay under 20 minutes on 2 cores.
SUITES := unit integration molecule sanity lint
test: bootstrap
	@for suite in $(SUITES); do \
	    start=$$SECONDS; \
	    $(MAKE) --no-print-directory $$suite || { echo "make test: $$suite FAILED"; exit 1; }; \
	    echo "make test: $$suite passed in $$((SECONDS - start))s"; \
	done
	@echo "make test: all suites passed ($(SUITES))"

# pytest exits 5 when no test ran, and (tests/conftest.py) when none passed:
# either fails make.
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
