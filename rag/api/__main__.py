"""``python -m rag.api [--host 127.0.0.1] [--port 8000] [--index DIR]``: the HTTP API (``make api``).

Without an API key configured (``RAG_API_KEYS``, or ``RAG_API_KEYS_FILE``) it serves loopback only: asked to listen
anywhere else, it exits 2 with the reason, before opening the index.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from pydantic import ValidationError

from rag.settings import Settings, get_settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def refusal(settings: Settings, host: str) -> str | None:
    """Why the server must not start on ``host`` with these settings, or None."""
    try:
        keys = settings.api_key_list
    except OSError as exc:
        return f"cannot read the API key file {settings.api_keys_file}: {exc.strerror or exc}"
    if not keys and not is_loopback(host):
        return (f"refusing to listen on {host} without an API key: set RAG_API_KEYS (comma-separated) or "
                "RAG_API_KEYS_FILE, or listen on 127.0.0.1")
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rag.api", description="Serve the HTTP API (OpenAI-compatible chat "
                                "with citations, documents and search) on the index.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other "
                   "needs an API key)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--index", type=Path, help="index folder (default: RAG_INDEX_DIR, or data/index)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = p.parse_args(argv)
    try:
        settings = get_settings()
        if args.index is not None:
            settings = settings.changed(index_dir=args.index)
    except ValidationError as exc:
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return 2
    if reason := refusal(settings, args.host):
        print(f"error: {reason}", file=sys.stderr)
        return 2

    import uvicorn

    from rag.api.app import create_app

    app = create_app(settings)
    keys = "API keys required" if settings.api_key_list else "no API key (loopback only)"
    print(f"rag.api: index {settings.index_dir}, {keys}, http://{args.host}:{args.port}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
