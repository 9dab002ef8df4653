"""A scripted OpenAI-compatible chat server for the agent loop.

Why a script: the bundled 135M model cannot follow the ReAct format reliably (it mostly answers in one line with
no Action), so the loop's paths (search → python → final answer, a malformed action corrected, an unknown tool,
the step limit) cannot be driven by a real model here. The server replays model turns written by the test, one
per chat request, through the real ``openai`` backend: real HTTP, real SSE streaming, real ``stop`` handling.

It behaves like vLLM where the loop depends on it:
- ``GET /v1/models`` lists one model with ``max_model_len`` (the context window the agent must respect);
- ``POST /v1/chat/completions`` streams the next scripted turn in a few deltas, cut at the first ``stop`` string
  and at ``max_tokens`` (counted as the backend estimates without /tokenize: 3 characters a token), then a
  finish_reason, a usage chunk and ``[DONE]``;
- a request whose prompt plus ``max_tokens`` exceeds ``max_model_len`` gets HTTP 400, as vLLM answers;
- ``POST /tokenize`` is 404 (not vLLM), so the backend estimates token counts;
- when the script is used up it answers HTTP 400 "script exhausted" (the test then sees ``llm_error``).
Every request body is recorded in ``requests`` for the test to inspect.
"""

from __future__ import annotations

import http.server
import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from rag.settings import Settings

SCRIPTED_MODEL = "scripted-react"
CHARS_PER_TOKEN = 3  # what OpenAILLM.count_tokens assumes when the server has no /tokenize


def tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


@dataclass
class ScriptedServer:
    root: str
    context_window: int = 4096
    script: list[str] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    piece_delay: float = 0.0  # seconds between streamed pieces: a slow model, to stop an answer midway
    models_asked: int = 0  # GET /v1/models requests served (health checks)

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def play(self, *turns: str, context_window: int = 4096, piece_delay: float = 0.0) -> ScriptedServer:
        """Load the model turns to replay (one per request) and forget earlier requests."""
        with self.lock:
            self.script = list(turns)
            self.requests = []
            self.context_window = context_window
            self.piece_delay = piece_delay
        return self

    def settings(self, **overrides: object) -> Settings:
        """Settings for the ``openai`` backend pointed at this server (no retries: a 400 is final anyway)."""
        values: dict[str, object] = {"llm": "openai", "llm_url": self.base_url, "llm_model": SCRIPTED_MODEL,
                                     "llm_api_key": "scripted-key", "llm_max_retries": 0, "llm_timeout": 30.0}
        values.update(overrides)
        return Settings(**values)

    def last_messages(self, request: int = -1) -> list[dict[str, str]]:
        return self.requests[request]["messages"]


def _make_handler(server: ScriptedServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output clean
            return

        def _json(self, status: int, document: dict) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._json(status, {"object": "error", "message": message, "type": "BadRequestError", "code": status})

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/v1/models"):
                with server.lock:
                    server.models_asked += 1
                self._json(200, {"object": "list", "data": [
                    {"id": SCRIPTED_MODEL, "object": "model", "created": 0, "owned_by": "test",
                     "max_model_len": server.context_window}]})
            else:
                self._error(404, "not found")

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if not self.path.endswith("/v1/chat/completions"):
                self._error(404, "not found")
                return
            with server.lock:
                server.requests.append(body)
                turn = server.script.pop(0) if server.script else None
            if turn is None:
                self._error(400, "script exhausted: the agent asked for more turns than the test scripted")
                return
            prompt = sum(tokens(m["content"]) + 8 for m in body["messages"])
            max_tokens = int(body.get("max_tokens") or 16)
            if prompt + max_tokens > server.context_window:
                self._error(400, f"This model's maximum context length is {server.context_window} tokens. "
                                 f"However, you requested {prompt + max_tokens} tokens.")
                return
            for stop in body.get("stop") or []:
                if stop in turn:
                    turn = turn[: turn.index(stop)]
            finish = "stop"
            if tokens(turn) > max_tokens:
                turn, finish = turn[: max_tokens * CHARS_PER_TOKEN], "length"
            pieces = [turn[i : i + 7] for i in range(0, len(turn), 7)]

            def chunk(choices: list, usage: dict | None = None) -> bytes:
                return b"data: " + json.dumps({"id": "s", "object": "chat.completion.chunk", "created": 0,
                                               "model": SCRIPTED_MODEL, "choices": choices,
                                               "usage": usage}).encode() + b"\n\n"

            events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": p}, "finish_reason": None}])
                      for p in pieces]
            events.append(chunk([{"index": 0, "delta": {}, "finish_reason": finish}]))
            events.append(chunk([], {"prompt_tokens": prompt, "completion_tokens": tokens(turn),
                                     "total_tokens": prompt + tokens(turn)}))
            events.append(b"data: [DONE]\n\n")
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for event in events:
                try:
                    self.wfile.write(event)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the reader stopped the answer
                    return
                time.sleep(server.piece_delay)

    return Handler


@pytest.fixture(scope="session")
def scripted_server() -> Iterator[ScriptedServer]:
    """The scripted chat server on a free loopback port; call ``.play(turn, ...)`` before each run."""
    state = ScriptedServer("")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    state.root = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
