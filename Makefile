# rolebroker: `make run` starts the local stack, `make test` runs every test.
# Both create .venv and install what they need on a fresh clone.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint bench mutate package install clean

$(STAMP): requirements.txt requirements-dev.txt constraints.txt client/pyproject.toml client/rolebroker.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -r requirements-dev.txt
	@# A regular (not editable) install: an editable one puts an import hook in
	@# front of every start of the client, which costs more than the cache hit itself.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall ./client
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m devstack run

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

# Mutation testing of the modules that decide access (mutmut; see mutation/).
# Long (hours on a shared 2-core machine), so not part of `make test` or CI.
# MUTATE_JOBS test processes at once; MODULES="broker stamping" for a few.
MUTATE_JOBS ?= 2
MODULES ?=
mutate: $(STAMP)
	$(BIN)/python -m mutation run --fresh --jobs $(MUTATE_JOBS) $(MODULES)

# chalice needs a region to start, never credentials: packaging makes no AWS
# call. The templates use the deploying account's region, not this one.
STAGE ?= prod
PACKAGE_ENV := AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1}

package: $(STAMP)
	rm -rf build/sam build/terraform
	$(PACKAGE_ENV) $(BIN)/chalice package --stage $(STAGE) --merge-template infra/resources.json build/sam
	$(PACKAGE_ENV) $(BIN)/chalice package --stage $(STAGE) --pkg-format terraform build/terraform
	@echo "build/sam/sam.json (deploy with --parameter-overrides Stage=$(STAGE)), build/terraform/chalice.tf.json"

clean:
	rm -rf $(VENV) build .devstack .pytest_cache .mypy_cache .ruff_cache mutants
