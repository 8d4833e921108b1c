# Every target installs what it needs: a fresh clone with Python 3.11+, Java 17+ and npm is enough.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install dynamodb-local docker-image lint typecheck docs test bench fault-matrix demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

# Fetch the DynamoDB Local jar once into the user cache (skipped when DYNAMODB_ENDPOINT is set).
dynamodb-local: install
	@if [ -z "$$DYNAMODB_ENDPOINT" ]; then \
		$(BIN)/python -m comic_vine_dynamodb_store.local fetch; \
	fi

lint: install
	$(BIN)/ruff check src tests bench docs/hooks
	$(BIN)/ruff format --check src tests bench docs/hooks

typecheck: install
	$(BIN)/mypy

# The docs site, built strictly: a broken link or a generated page that fails breaks the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

# A Docker engine and a DynamoDB Local image built here from the cached jar and this machine's
# JRE (no registry needed), where the machine allows: as root with apt, docker.io is installed
# and dockerd started if none answers. Idempotent; quick once done. `make test` runs it and
# never fails on it: without Docker the testcontainers tests skip and say why. The suite runs
# on the jar (or DYNAMODB_ENDPOINT); the contract suites and a process race run on both.
DOCKER_IMAGE ?= comic-vine-store/dynamodb-local:local

docker-image: dynamodb-local
	@bash containers/engine-and-image.sh "$$($(BIN)/python -m comic_vine_dynamodb_store.local fetch)" $(DOCKER_IMAGE)

test: lint typecheck docs dynamodb-local
	@bash containers/engine-and-image.sh "$$($(BIN)/python -m comic_vine_dynamodb_store.local fetch)" $(DOCKER_IMAGE) \
		|| echo "make test: no Docker engine or image here; the testcontainers tests will say why they skip"
	DYNAMODB_LOCAL_IMAGE=$(DOCKER_IMAGE) TESTCONTAINERS_RYUK_DISABLED=true \
		$(BIN)/python -m pytest --dynamodb-provider=$(if $(DYNAMODB_ENDPOINT),env,jar)

# Measurements, not tests: every store's costs and speed, on one DynamoDB Local, into
# bench/results.json (which the docs' cost page is built from).
bench: dynamodb-local
	$(BIN)/python bench/run_all.py

# The fault matrix (docs/fault-matrix.json, rendered on the docs' Resilience page): every store
# against every injected fault, on one DynamoDB Local. `make test` checks the committed file.
fault-matrix: dynamodb-local
	FAULT_MATRIX_WRITE=1 $(BIN)/python -m pytest -q tests/faults/test_matrix.py

demo: install
	$(BIN)/python -m comic_vine_dynamodb_store.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist src/*.egg-info
