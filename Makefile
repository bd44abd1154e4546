# rolebroker: `make run` starts the local stack, `make test` runs every test.
# Both create .venv and install what they need on a fresh clone.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Two sets: `make run` installs only what the local stack needs (requirements-run.txt,
# ~160 MB); `make test`, `lint`, `bench` and `package` add the test and lint tools
# (requirements-dev.txt, ~650 MB in all).
RUN_STAMP := $(VENV)/.run-stamp
STAMP     := $(VENV)/.installed-stamp
PIP       := $(BIN)/python -m pip install --disable-pip-version-check --progress-bar on -c constraints.txt

.PHONY: run test lint bench mutate package install client clean

CLIENT_SOURCES := $(wildcard client/rolebroker/*.py)

$(RUN_STAMP): requirements.txt requirements-run.txt constraints.txt client/pyproject.toml $(CLIENT_SOURCES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "== installing what the local stack needs into $(VENV) (the first time takes a few minutes)"
	@# chalice packages with pip and supports pip below 26.3.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade 'pip>=24,<26.3'
	$(PIP) -r requirements-run.txt
	@# A regular (not editable) install: an editable one puts an import hook in
	@# front of every start of the client, which costs more than the cache hit itself.
	@# setuptools builds in client/build: a stale build/lib would ship removed modules.
	rm -rf client/build client/*.egg-info
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall ./client
	@touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP) requirements-dev.txt
	@echo "== installing the test and lint tools into $(VENV)"
	$(PIP) -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

run: $(RUN_STAMP)
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
# MUTATE_JOBS test processes at once; MODULES="broker stamping" for a few. Runs are
# incremental: modules not named keep their results, and mutmut keeps the verdicts of
# every function whose code is unchanged; MUTATE_FRESH=1 starts from an empty mutants/.
MUTATE_JOBS ?= 2
MODULES ?=
MUTATE_FRESH ?=
mutate: $(STAMP)
	$(BIN)/python -m mutation run $(if $(MUTATE_FRESH),--fresh) --jobs $(MUTATE_JOBS) $(MODULES)

# The copy-anywhere client: one file, `python3 build/rolebroker.pyz ...`. Its
# bytecode is for the Python that builds it (others compile in memory).
client: build/rolebroker.pyz

build/rolebroker.pyz: client/make_pyz.py $(CLIENT_SOURCES)
	$(PYTHON) client/make_pyz.py $@

# chalice needs a region to start, never credentials: packaging makes no AWS
# call. The templates use the deploying account's region, not this one.
# The project is copied into build/package with the IAM policies generated
# for ACCESS_POLICY (and IAM_OPTIONS, e.g. --organization-id o-... --account-id
# ... --region ...), so the checked-in example policies stay as they are.
STAGE ?= prod
ACCESS_POLICY ?= infra/example-access-policy.yaml
IAM_OPTIONS ?=
PACKAGE_ENV := AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1}

package: $(STAMP)
	rm -rf build/sam
	$(BIN)/python -m infra.generate package --policy $(ACCESS_POLICY) --stage $(STAGE) --out build/package $(IAM_OPTIONS)
	cd build/package && $(PACKAGE_ENV) $(abspath $(BIN))/chalice package --stage $(STAGE) \
	    --merge-template resources.json $(abspath build/sam)
	$(BIN)/python -m infra.bytecode build/sam
	@echo "build/sam/sam.json: deploy it with --parameter-overrides Stage=$(STAGE)"

clean:
	rm -rf $(VENV) build client/build client/*.egg-info .devstack .pytest_cache .mypy_cache .ruff_cache mutants
