# envvars — the commands. `make demo` and `make test` work on a fresh clone by themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the suite on both cores: each test module runs whole on one worker, so its server is started once
WORKERS := -n 2 --dist loadfile
RELIABILITY := tests/test_fuzz.py tests/test_durability.py tests/test_concurrency.py tests/test_secrets.py \
	tests/test_auth_isolation.py tests/test_faults.py tests/test_bad_input.py

.PHONY: install engine sdks demo demo-cluster test typecheck test-unit soak bench bench-smoke gen-schema gen-sdk dist clean

install: $(STAMP) engine sdks ## venv with the project, the SDK, the pinned deps; host tools; the Pulumi engine; the SDKs built

$(STAMP): pyproject.toml sdk/python/pyproject.toml scripts/install-system-deps.sh
	scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e sdk/python
	touch $@

engine: ## the pinned Pulumi CLI and its Python, Node.js, Go and YAML language hosts, built once into the user's cache
	scripts/build-pulumi.sh >/dev/null

sdks: ## the TypeScript SDK compiled with tsc and the Go SDK with go build (versions pinned in tools/sdk-build)
	scripts/build-sdks.sh >/dev/null

demo: install ## the example from first up to a changed value: preview --diff, VMs replaced (values masked)
	$(BIN)/python examples/demo.py

demo-cluster: install ## the same story through HAProxy in front of three replicas on a throwaway PostgreSQL
	$(BIN)/python examples/demo.py --cluster

test: install ## the whole suite, after the linter and the type checker
	$(BIN)/ruff check envvars server provider tests examples bench scripts
	$(MAKE) --no-print-directory typecheck
	$(BIN)/python -m pytest -q $(WORKERS)

typecheck: $(STAMP) ## mypy --strict on the three hand-written packages, by their installed names
	mkdir -p build/mypy
	ln -sfn ../../envvars build/mypy/envvars
	ln -sfn ../../server build/mypy/envvars_server
	ln -sfn ../../provider build/mypy/envvars_provider
	cd build/mypy && MYPYPATH=. ../../$(BIN)/mypy --config-file ../../pyproject.toml --cache-dir ../../.mypy_cache \
		-p envvars -p envvars_server -p envvars_provider

test-unit: install ## the fast part of the suite (no real engine)
	$(BIN)/python -m pytest -q -m 'not slow'

soak: install ## the reliability suite at its larger setting (about 25 minutes): its figures print at the end
	ENVVARS_SOAK=1 $(BIN)/python -m pytest -q $(RELIABILITY)

bench: install ## the benchmarks (several minutes): one line per figure, JSON in bench/results/
	$(BIN)/python -m bench

bench-smoke: install ## the same benchmarks with tiny sizes (under a minute): they run, nothing is measured
	$(BIN)/python -m bench --smoke

gen-schema: $(STAMP) ## schema.json from the resource declarations
	$(BIN)/python -m envvars_provider.schema schema.json

gen-sdk: gen-schema ## sdk/python, sdk/nodejs and sdk/go from schema.json
	scripts/gen-sdk.sh schema.json sdk

dist: install ## dist/: the provider and Python SDK wheels, the npm tarball, the Go module zip, the plugin archive
	$(BIN)/python scripts/dist.py

clean:
	rm -rf $(VENV) .pytest_cache build dist
