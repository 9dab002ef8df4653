"""The HTTP API served by ``python -m rag.api`` in a child process on a free loopback port, on an index of its own.

``serve_api(folder, **env)`` starts it with extra ``RAG_*`` settings (the real embedding model, the 135M chat
model) and stops its whole process group afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, SMALL_MODEL
from tests.fixtures_llm import free_port, stop_process_group

KEY = "test-key-1"
OTHER_KEY = "test-key-2"


@dataclass(frozen=True)
class ApiServer:
    url: str  # http://127.0.0.1:PORT
    folder: Path  # holds index/ and uploads/
    pid: int

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def client(self, key: str | None = KEY, timeout: float = 600) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def rss_mb(self) -> float:
        """The server's resident memory."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def health(self) -> dict:
        with self.client() as c:
            response = c.get("/health")
        response.raise_for_status()
        return response.json()


@contextmanager
def serve_api(folder: Path, **env: str) -> Iterator[ApiServer]:
    port = free_port()
    settings = {**os.environ, "RAG_INDEX_DIR": str(folder / "index"), "RAG_LLM": "embedded",
                "RAG_EMBEDDED_MODEL": SMALL_MODEL, "RAG_API_KEYS": f"{KEY},{OTHER_KEY}", "PYTHONPATH": str(ROOT),
                **env}
    log_path = folder / "api.log"
    log = open(log_path, "wb")
    server = subprocess.Popen([sys.executable, "-m", "rag.api", "--port", str(port), "--log-level", "warning"],
                              cwd=ROOT, env=settings, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail("the API server exited:\n" + log_path.read_text()[-3000:])
            try:
                if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("the API server did not start:\n" + log_path.read_text()[-3000:])
        yield ApiServer(url, folder, server.pid)
    finally:
        stop_process_group(server)
        log.close()
