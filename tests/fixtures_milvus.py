"""A Milvus server for the tests: ``scripts/milvus.sh`` (Milvus Lite's gRPC server) on a free loopback port, started
once per session by the first test that needs it, stopped (its whole process group) at the end. Its log goes to
``test-artifacts/milvus-server.log``; its data to a temporary folder. Tests reach it through ``pymilvus`` exactly
as they would reach a cluster."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures_llm import LOG_DIR, ROOT, free_port, stop_process_group

READY_TIMEOUT_S = 90


@dataclass
class MilvusServer:
    """A running server; ``stop()`` and ``start()`` take it away and bring it back on the same port and data."""

    uri: str
    port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["bash", str(ROOT / "scripts" / "milvus.sh")],
                env={**self._env(), "DATA_DIR": str(self.data_dir), "READY_TIMEOUT": str(READY_TIMEOUT_S)},
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: teardown reaches the server under the script
            )
        started = time.monotonic()
        while not self.ready():
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"the Milvus server exited with code {self.process.returncode}:\n{tail}")
            if time.monotonic() - started > READY_TIMEOUT_S:
                pytest.fail(f"the Milvus server was not ready after {READY_TIMEOUT_S} s (log: {self.log_path})")
            time.sleep(0.2)

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PYTHON": sys.executable, "PORT": str(self.port), "HOST": "127.0.0.1"}

    def ready(self) -> bool:
        """The port is open and a client lists the collections (as ``scripts/milvus.sh --check`` asks)."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        from pymilvus import MilvusClient

        from rag.index.milvus import GRPC_OPTIONS

        try:
            client = MilvusClient(uri=self.uri, timeout=5, grpc_options=GRPC_OPTIONS, dedicated=True)
        except Exception:  # noqa: BLE001 - any failure means "not yet"
            return False
        try:
            client.list_collections()
        except Exception:  # noqa: BLE001
            return False
        finally:
            client.close()
        return True

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process, grace_s=10)
            self.process = None


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    LOG_DIR.mkdir(exist_ok=True)
    log_path = LOG_DIR / "milvus-server.log"
    log_path.write_bytes(b"")
    port = free_port()
    server = MilvusServer(f"http://127.0.0.1:{port}", port, tmp_path_factory.mktemp("milvus-data"), log_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
