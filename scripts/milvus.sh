#!/usr/bin/env bash
# Serve a local Milvus for development and tests: Milvus Lite's gRPC server, which speaks the API of Milvus
# Standalone and Distributed (pymilvus reaches it exactly as it would reach a cluster). Then run the app on it with
#   RAG_STORE=milvus RAG_MILVUS_URI=http://127.0.0.1:19530 make run
#
#   make milvus                               # serve data/milvus on 127.0.0.1:19530 (Ctrl-C stops it)
#   PORT=19531 DATA_DIR=/tmp/m scripts/milvus.sh
#   scripts/milvus.sh --check                 # exit 0 when a server answers on HOST:PORT, 1 otherwise
#
# Environment: PORT (19530), HOST (127.0.0.1), DATA_DIR (data/milvus), READY_TIMEOUT (60 s).
# - Always binds the loopback address unless HOST says otherwise: milvus-lite binds 0.0.0.0 when not told, and an
#   index is the library's whole text. A shared deployment is a Milvus cluster with authentication (docs/milvus.md).
# - Ready when a pymilvus client lists the collections (asked once the port is open: the port opens a little
#   before the service answers).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
PORT="${PORT:-19530}"
HOST="${HOST:-127.0.0.1}"
DATA_DIR="${DATA_DIR:-$ROOT/data/milvus}"
READY_TIMEOUT="${READY_TIMEOUT:-60}"
URI="http://$HOST:$PORT"

listening() {
    (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

ready() {
    listening || return 1
    "$PY" - "$URI" <<'PY' >/dev/null 2>&1
import logging, sys
logging.disable(logging.CRITICAL)
from pymilvus import MilvusClient
MilvusClient(uri=sys.argv[1], timeout=2, dedicated=True).list_collections()
PY
}

if [[ "${1:-}" == "--check" ]]; then
    ready && exit 0 || exit 1
fi
if listening; then
    echo "something already listens on $HOST:$PORT" >&2
    exit 1
fi

mkdir -p "$DATA_DIR"
"$PY" -m milvus_lite server --data-dir "$DATA_DIR" --host "$HOST" --port "$PORT" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT INT TERM
started=$SECONDS
until ready; do
    if ! kill -0 "$SERVER" 2>/dev/null; then
        echo "milvus-lite exited before it was ready" >&2
        exit 1
    fi
    if (( SECONDS - started > READY_TIMEOUT )); then
        echo "milvus-lite not ready after $READY_TIMEOUT s" >&2
        exit 1
    fi
    sleep 0.5
done
echo "Milvus ready on $URI (data in $DATA_DIR): RAG_STORE=milvus RAG_MILVUS_URI=$URI" >&2
wait "$SERVER"
