# The two commands of the README: `make demo` and `make test` (Debian 12, as root).
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.cache/collections
export ANSIBLE_LOCAL_TEMP := $(CURDIR)/.cache/ansible-tmp
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help bootstrap demo test unit integration integration-debian molecule sanity lint build docs

help:
	@echo "make demo   - build the namespace lab, apply the recipes, show which uplink each flow took"
	@echo "make test   - run every test (unit, integration in namespaces, molecule, sanity, lint)"
	@echo "              (each also alone: make unit|integration|integration-debian|molecule|sanity|lint; see docs/development.md)"
	@echo "make build  - build the collection tarball into .build/"
	@echo "make docs   - build the reference site (antsibull-docs) into .build/docs/"

bootstrap:
	@./scripts/bootstrap

demo: bootstrap
	$(PY) -m tests.lab.demo

# Each suite in turn, stopping at the first that fails; the time of each is
# printed, as the whole run must stay under 20 minutes on 2 cores.
SUITES := unit integration integration-debian molecule sanity lint
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

# Two worker processes (pytest-xdist), a test file each at a time: the tests
# mostly wait on ansible-playbook and the kernel, so two cores serve two files.
XDIST := -n 2 --dist loadfile
integration:
	$(PY) -m pytest -p no:cacheprovider $(XDIST) tests/integration

# The module tests again with the interpreter of a Debian 12 router: /usr/bin/python3
# with python3-pyroute2 (0.7.2) from apt; tests/helpers/modules.py runs the modules
# with NETPOLICY_TEST_PYTHON, and test_module_python.py checks that it really does.
DEBIAN_PYTHON := /usr/bin/python3
DEBIAN_MODULE_TESTS := $(addprefix tests/integration/,test_module_python.py test_rt_tables_entry.py \
	test_route_table.py test_ip_rule.py test_connmark_return.py test_apply_state.py)
integration-debian:
	@$(DEBIAN_PYTHON) -c 'import sys, importlib.metadata as m; print("integration-debian: modules run with", sys.executable, "pyroute2", m.version("pyroute2"))'
	NETPOLICY_TEST_PYTHON=$(DEBIAN_PYTHON) $(PY) -m pytest -p no:cacheprovider $(XDIST) $(DEBIAN_MODULE_TESTS)

molecule:
	@./scripts/molecule-all

sanity:
	@./scripts/sanity

lint:
	ansible-lint --profile production

build: bootstrap
	@./scripts/build

docs: bootstrap
	@./scripts/docs
