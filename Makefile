# envvars — the commands. `make demo` and `make test` work on a fresh clone by themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit clean

install: $(STAMP) ## venv with the project, its pinned dependencies and the host tools the sandboxes need

$(STAMP): pyproject.toml scripts/install-system-deps.sh
	scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: install ## start the server, set variables, boot a VM and show its /etc/environment
	$(BIN)/python examples/vers_demo.py

test: install ## the whole suite, after the linter
	$(BIN)/ruff check envvars server provider tests examples
	$(BIN)/python -m pytest -q

test-unit: install ## the fast part of the suite
	$(BIN)/python -m pytest -q -m 'not slow'


clean:
	rm -rf $(VENV) .pytest_cache
