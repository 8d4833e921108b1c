# Every target installs what it needs: a fresh clone with Python 3.11+, Java 17+ and npm is enough.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install dynamodb-local lint typecheck test bench clean

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
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

test: lint typecheck dynamodb-local
	$(BIN)/python -m pytest

# Measurements, not tests: costs and speed of the stores against one DynamoDB Local each.
bench: dynamodb-local
	$(BIN)/python bench/bench_cache.py
	$(BIN)/python bench/bench_dedupe.py
	$(BIN)/python bench/bench_rate_limit.py
	$(BIN)/python bench/bench_adaptive.py
	$(BIN)/python bench/bench_client.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist src/*.egg-info
