# omnihub: `make up` runs the whole hub, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
AUDIT_STAMP := $(VENV)/.installed-audit
PINS   := constraints.txt
# how installs are pinned; `make lock` empties it to resolve afresh
PIN_FLAGS := -c $(PINS)

# extra pip-audit arguments, e.g. AUDIT_FLAGS='--ignore-vuln GHSA-xxxx-xxxx-xxxx'
AUDIT_FLAGS ?=

.PHONY: install up test lint bench schemas lock audit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml $(PINS)
	$(BIN)/pip install --quiet $(PIN_FLAGS) -e '.[embedded]'
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet $(PIN_FLAGS) -e '.[embedded,test]'
	touch $(TEST_STAMP)

$(AUDIT_STAMP): $(STAMP)
	$(BIN)/pip install --quiet $(PIN_FLAGS) -e '.[embedded,audit]'
	touch $(AUDIT_STAMP)

install: $(STAMP)  ## create .venv and install omnihub

up: install  ## start the embedded stack and every component
	$(BIN)/omnihub up

test: install $(TEST_STAMP)  ## run the whole suite against real Tansu and PostgreSQL
	$(BIN)/pytest -q

lint: install $(TEST_STAMP)  ## ruff and mypy (strict on schemas/ and channels/)
	$(BIN)/ruff check schemas channels services tests
	$(BIN)/ruff format --check schemas channels services
	$(BIN)/mypy schemas channels services

bench: install  ## throughput and latency benchmark, prints JSON
	$(BIN)/omnihub bench

schemas: install  ## regenerate the committed JSON Schemas and AsyncAPI document (schemas/asyncapi.yaml)
	$(BIN)/python -m schemas.jsonschema

audit: install $(AUDIT_STAMP)  ## known vulnerabilities of every pin in constraints.txt (pip-audit; needs the network, not part of `make test`)
	$(BIN)/pip-audit --strict --no-deps --disable-pip --desc on -r $(PINS) $(AUDIT_FLAGS)

lock:  ## re-resolve every dependency from pyproject.toml into constraints.txt (then make test)
	rm -rf .venv-lock
	$(MAKE) --no-print-directory VENV=.venv-lock PIN_FLAGS= .venv-lock/.installed-test .venv-lock/.installed-audit
	{ head -n 1 $(PINS); .venv-lock/bin/pip freeze --exclude-editable; } > $(PINS).new
	mv $(PINS).new $(PINS)
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .omnihub .pytest_cache .mypy_cache .ruff_cache
