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
TRAIN_STAMP := $(VENV)/.installed-train-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# HF datasets, datatrove and the dolma CLI, which tests/datasets/test_interop.py runs on the
# versions PriorForge writes. A virtualenv of their own: dolma wants older boto3 and rich than
# the main one. Pinned to a set that installs together on Python 3.11:
# - dolma 1.0.8: 1.0.9+ cap tokenizers at 0.19.1 (so huggingface-hub < 1, where datasets 5
#   needs >= 1.31) and 1.0.12+ cap numpy below 2 (datatrove 0.10 needs >= 2);
# - smart_open[zst]: smart_open 9 reads .zst through backports.zstd, which dolma does not ask
#   for, and `dolma tag` fails on .zst files without it;
# - orjson: datatrove's JsonlReader needs it but only datatrove's `io` extra installs it.
INTEROP := $(VENV)/interop
INTEROP_PACKAGES := datasets==5.2.0 datatrove==0.10.1 dolma==1.0.8 smart_open[zst] orjson
INTEROP_STAMP := $(INTEROP)/.installed-$(shell echo "$(INTEROP_PACKAGES)" | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench bench-load mutate serve worker install interop browser clean

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

$(INTEROP_STAMP):
	@test -x $(INTEROP)/bin/python || $(PYTHON) -m venv $(INTEROP)
	@echo "installing datasets, datatrove and dolma into $(INTEROP) (for test_interop.py) ..."
	@# Python 3.11's bundled pip backtracks for minutes over dolma's boto3; a current one doesn't.
	@$(INTEROP)/bin/python -m pip install -qq --upgrade pip
	@$(INTEROP)/bin/python -m pip install -qq $(foreach p,$(INTEROP_PACKAGES),'$(p)')
	@rm -f $(INTEROP)/.installed-* && touch $@

interop: $(INTEROP_STAMP)

# Debian's Chromium for the dashboard's browser tests: Playwright drives it (Playwright's own
# browser download needs the internet). Installed with apt, as root or through sudo.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	@echo "installing Debian's chromium (for tests/admin/test_browser.py) ..."
	@$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null \
	  || { echo "could not install chromium: run 'sudo apt-get install chromium', then make test"; exit 1; }

browser: $(CHROMIUM)

# PyTorch for the runner's tests (the `train` extra; CUDA libraries included, about 5 GB).
$(TRAIN_STAMP): $(STAMP)
	@echo "installing the runner's train extra (PyTorch) into $(VENV) ..."
	@$(BIN)/python -m pip install -qq -e '.[train]'
	@touch $@

# mutmut for `make mutate`, on top of the usual install (its own extra: not needed for `test`).
$(MUTATE_STAMP): $(STAMP)
	@$(BIN)/python -m pip install -qq -e '.[mutate]'
	@touch $@

# With PRIORFORGE_LLM_BASE_URL unset the demo runs on the bundled local model.
demo: $(STAMP)
	$(BIN)/priorforge demo

test: $(STAMP) $(INTEROP_STAMP) $(TRAIN_STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest

lint: $(STAMP) $(TRAIN_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app workers runner tests bench

bench: $(STAMP)
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/dedup.py
	$(BIN)/python bench/decontam.py
	$(BIN)/python bench/export.py
	$(BIN)/python bench/pull.py

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
