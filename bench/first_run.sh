#!/usr/bin/env bash
# A first run as a fresh machine sees it: a clean clone of this repository's HEAD and empty caches (HOME is an empty
# folder, so pip's cache, the llama.cpp wheel cache and vLLM's cache all start empty), then
#   run:  `make run` until the page answers on 127.0.0.1 (the demo corpus ingested on the way), or
#   test: `make test` to its end.
#
#   bench/first_run.sh run  [WORKDIR]     # prints the seconds to the first HTTP 200 of the page
#   bench/first_run.sh test [WORKDIR]     # prints the seconds of the whole `make test`, and pytest's last line
#
# Each step's own time is in WORKDIR/log (`make` prints the steps as they start). Nothing outside WORKDIR is
# written; WORKDIR (default: a new folder under /tmp) is left for a look.
set -euo pipefail

MODE="${1:?usage: bench/first_run.sh run|test [WORKDIR]}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${2:-$(mktemp -d /tmp/first-run-XXXX)}"
mkdir -p "$WORK/home"
git clone --quiet "$ROOT" "$WORK/repo"
cd "$WORK/repo"
export HOME="$WORK/home"
PORT="${PORT:-8599}"
started=$(date +%s)

if [ "$MODE" = run ]; then
    make run PORT="$PORT" > "$WORK/log" 2>&1 &
    runner=$!
    until curl -sf "http://127.0.0.1:$PORT/" -o /dev/null; do
        if ! kill -0 "$runner" 2>/dev/null; then
            echo "make run stopped before the page answered; see $WORK/log" >&2
            exit 1
        fi
        sleep 2
    done
    echo "make run: page answered HTTP 200 after $(( $(date +%s) - started )) s (log: $WORK/log)"
    pkill -f "streamlit run app.py --server.address 127.0.0.1 --server.port $PORT" || true
    wait "$runner" 2>/dev/null || true
else
    status=0
    make test > "$WORK/log" 2>&1 || status=$?
    echo "make test: exit $status after $(( $(date +%s) - started )) s (log: $WORK/log)"
    for stamp in .venv/.installed data/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf .venv-vllm/bin/python; do
        [ -e "$stamp" ] && echo "  $stamp ready after $(( $(stat -c %Y "$stamp") - started )) s"
    done
    grep -E "^=+ .*(passed|failed|error)" "$WORK/log"  # one line per pytest run: without vLLM, then vLLM
fi
