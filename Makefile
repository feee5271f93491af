# envvars — the commands. `make demo` and `make test` work on a fresh clone by themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install engine demo test test-unit gen-schema gen-sdk clean

install: $(STAMP) engine ## venv with the project, the SDK, the pinned deps; host tools; the Pulumi engine

$(STAMP): pyproject.toml sdk/python/pyproject.toml scripts/install-system-deps.sh
	scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e sdk/python
	touch $@

engine: ## the pinned Pulumi CLI and Python language host, built once into the user's cache
	scripts/build-pulumi.sh >/dev/null

demo: install ## start the server, `pulumi up` the example, show what each VM sees (values masked)
	$(BIN)/python examples/demo.py

test: install ## the whole suite, after the linter
	$(BIN)/ruff check envvars server provider tests examples
	$(BIN)/python -m pytest -q

test-unit: install ## the fast part of the suite (no real engine)
	$(BIN)/python -m pytest -q -m 'not slow'

gen-schema: $(STAMP) ## schema.json from the resource declarations
	$(BIN)/python -m envvars_provider.schema schema.json

gen-sdk: gen-schema ## sdk/python from schema.json
	scripts/gen-sdk.sh schema.json sdk/python

clean:
	rm -rf $(VENV) .pytest_cache
