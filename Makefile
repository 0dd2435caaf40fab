# The two commands: `make demo` and `make test`. Every target installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench serve worker install clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing priorforge and its dev tools into $(VENV) ..."
	@$(BIN)/python -m pip install -qq --upgrade pip
	@$(BIN)/python -m pip install -qq -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# Until the bundled local model lands, the demo talks to the deterministic test LLM server
# on a free loopback port (set PRIORFORGE_LLM_BASE_URL to use a real model instead).
demo: $(STAMP)
	@set -e; \
	if [ -n "$$PRIORFORGE_LLM_BASE_URL" ]; then exec $(BIN)/priorforge demo; fi; \
	port=$$($(BIN)/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
	$(BIN)/python -m tests.llm_server --port $$port & server=$$!; \
	trap 'kill $$server 2>/dev/null' EXIT INT TERM; \
	for i in $$(seq 100); do \
	  $(BIN)/python -c "import socket; socket.create_connection(('127.0.0.1', $$port), 1)" 2>/dev/null && break; \
	  sleep 0.1; \
	done; \
	PRIORFORGE_LLM_BASE_URL=http://127.0.0.1:$$port/v1 $(BIN)/priorforge demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app workers tests bench

bench: $(STAMP)
	$(BIN)/python bench/pipeline.py

serve: $(STAMP)
	$(BIN)/priorforge serve

worker: $(STAMP)
	$(BIN)/priorforge worker

clean:
	rm -rf $(VENV) .priorforge .pytest_cache .mypy_cache .ruff_cache
