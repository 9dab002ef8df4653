"""The Milvus backend's own behaviour, beyond the store contract it shares with the embedded store (that runs on
both through ``store_factory``): a server that goes away mid-question, a writer killed midway, writers and readers
in several processes at once. Every test here talks to a real Milvus Lite server over loopback gRPC."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import Ingestor
from rag.index.embedder import Embedder
from rag.index.milvus import MilvusStore
from rag.index.records import StoreError
from rag.retrieval.retriever import Retriever
from tests.conftest import ROOT
from tests.fixtures_llm import LOG_DIR, free_port
from tests.fixtures_milvus import MilvusServer
from tests.stores import Milvus

pytestmark = pytest.mark.milvus


def _docs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bees.txt").write_text("Honey bees communicate the direction of flowers with a waggle dance.\n")
    (folder / "trains.txt").write_text("The Glacier Express crosses 291 bridges between Zermatt and St. Moritz.\n")
    return folder


def test_a_server_stopped_mid_question_is_a_clear_error_and_the_store_recovers(
    tmp_path: Path, embedder: Embedder
) -> None:
    """The server goes away between two questions: the next one fails within the request timeout with a
    ``StoreError`` naming the server (what the page shows), and the same store answers again once it is back."""
    server = MilvusServer(f"http://127.0.0.1:{free_port()}", 0, tmp_path / "data", LOG_DIR / "milvus-restart.log")
    server.port = int(server.uri.rsplit(":", 1)[1])
    server.log_path.parent.mkdir(exist_ok=True)
    server.start()
    try:
        store = MilvusStore(tmp_path / "index", uri=server.uri, embed_model=embedder.name, dim=embedder.dim,
                            timeout=3)
        Ingestor(store, embedder=embedder).ingest([_docs(tmp_path / "docs")])
        retriever = Retriever(store, embedder=embedder)
        before = retriever.retrieve("How do bees show where flowers are?", 2)
        assert before.hits[0].chunk.source == "bees.txt"

        server.stop()
        started = time.monotonic()
        with pytest.raises(StoreError) as failure:
            retriever.retrieve("How many bridges does the Glacier Express cross?", 2)
        assert server.uri in str(failure.value) and "Milvus" in str(failure.value)
        assert time.monotonic() - started < 30, "the question fails within the request timeout, it does not hang"

        server.start()
        after = retriever.retrieve("How do bees show where flowers are?", 2)
        assert [h.chunk.id for h in after.hits] == [h.chunk.id for h in before.hits]
        assert retriever.retrieve("How many bridges does the Glacier Express cross?", 1).hits[0].chunk.source \
            == "trains.txt"
        store.close()
    finally:
        server.stop()


def test_an_unreachable_server_is_named_when_the_store_opens(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(StoreError, match=uri.replace(".", r"\.")):
        MilvusStore(tmp_path, uri=uri, embed_model="t", dim=4, timeout=2)


def _worker(role: str, index: Path, seed: int, amount: float, uri: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.store_worker", role, str(index), str(seed), str(amount), uri],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_writer_killed_midway_leaves_the_old_version_whole_and_a_rerun_completes(
    tmp_path: Path, milvus_server: MilvusServer
) -> None:
    """A replace killed by SIGKILL after the first of its three insert batches: readers go on seeing the old
    version whole, and the next writer deletes the dead one's rows and writes its own version completely."""
    from tests.store_worker import DIM, document_chunks, open_store, whole_and_current

    index = tmp_path / "index"
    store = open_store(index, milvus_server.uri)
    rng = np.random.default_rng(1)
    old = document_chunks(7, 0, 1, rng)
    with store.writer():
        store.put_document(path="/worker/big.txt", base="big.txt", kind="txt", sha256=f"v1 n{len(old)}", size=1,
                           pages=None, recipe="worker", chunks=old)

    killed = _worker("killed-writer", index, 2, 60, milvus_server.uri)
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert isinstance(store, MilvusStore)
    assert len(store.stored_chunks()) == len(old) + 25, "it died with one batch of its new version written"

    assert store.document("big.txt").sha256 == f"v1 n{len(old)}"
    vector = rng.normal(size=DIM).astype(np.float32)
    hits = store.search_dense(vector / np.linalg.norm(vector), 20)
    assert {c.text.split()[0] for c in store.chunks([i for i, _ in hits])} == {"w7d0v1"}, "only the old version"
    assert whole_and_current(store, hits[0][0]) is None
    assert store.search_sparse("part", 50) and all(
        c.text.startswith("w7d0v1") for c in store.chunks([i for i, _ in store.search_sparse("part", 50)]))

    new = document_chunks(7, 0, 3, rng) * 3
    with store.writer():
        store.put_document(path="/worker/big.txt", base="big.txt", kind="txt", sha256=f"v3 n{len(new)}", size=1,
                           pages=None, recipe="worker", chunks=new)
    Milvus(milvus_server.uri).assert_consistent(store)  # the dead writer's rows are gone too
    assert {r["version"] for r in store.stored_chunks()} - store.retired_versions() == {
        store._view().versions[store.document("big.txt").id]}, "only the new version and the retired old one"
    assert store.document("big.txt").chunks == len(new) == store.chunk_count()
    store.close()


def test_three_writers_and_a_reader_at_once(tmp_path: Path, milvus_server: MilvusServer) -> None:
    """Three writer processes and a reading process on one Milvus index: the reader never gets a deleted id nor
    half a document, writers fail only with "busy", and the index ends holding what the writers committed last."""
    from tests.store_worker import open_store

    index = tmp_path / "index"
    open_store(index, milvus_server.uri).close()
    processes = [_worker("writer", index, seed, 8, milvus_server.uri) for seed in (1, 2, 3)]
    processes.append(_worker("reader", index, 9, 8, milvus_server.uri))
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    assert json.loads(outputs[3][0])["reads"] > 10
    expected: dict[str, int | None] = {}
    for seed in (1, 2, 3):
        for line in (tmp_path / f"writer-{seed}.log").read_text().splitlines():
            change = json.loads(line)
            expected[change["path"]] = change["version"]
    assert len(expected) >= 5, "the writers got their turns"
    store = open_store(index, milvus_server.uri)
    stored = {d.path: int(d.sha256.split()[0][1:]) for d in store.documents()}
    assert stored == {path: v for path, v in expected.items() if v is not None}
    Milvus(milvus_server.uri).assert_consistent(store)
    store.close()


def test_the_api_on_milvus_reports_the_server_and_survives_it_stopping(tmp_path: Path) -> None:
    """``python -m rag.api`` with ``RAG_STORE=milvus``: ``/health`` names the store and its server; with the server
    gone, ``/health`` still answers (degraded, the reason naming the server) and searches fail with a 503 that names
    it, never a 500 or a hang; once the server is back the same API process answers again."""
    import httpx

    from tests.fixtures_api import serve_api

    server = MilvusServer(f"http://127.0.0.1:{free_port()}", 0, tmp_path / "data", LOG_DIR / "milvus-api.log")
    server.port = int(server.uri.rsplit(":", 1)[1])
    server.log_path.parent.mkdir(exist_ok=True)
    server.start()
    try:
        with serve_api(tmp_path, RAG_STORE="milvus", RAG_MILVUS_URI=server.uri, RAG_MILVUS_TIMEOUT="3") as api, \
                api.client() as c:
            added = c.post("/v1/documents", files=[("files", ("bees.txt", b"Honey bees dance to show where "
                                                                           b"flowers are.", "text/plain"))])
            assert added.status_code == 200, added.text
            health = api.health()
            assert health["status"] == "ok", health
            assert (health["index"]["store"], health["index"]["milvus_uri"]) == ("milvus", server.uri)
            assert (health["index"]["documents"], health["index"]["chunks"]) == (1, 1)

            server.stop()
            started = time.monotonic()
            health = c.get("/health")
            assert health.status_code == 200
            down = health.json()
            assert down["status"] == "degraded" and down["index"]["ok"] is False
            assert server.uri in down["index"]["detail"] and down["index"]["documents"] is None
            search = c.post("/v1/search", json={"query": "How do bees show the way?", "k": 1})
            assert search.status_code == 503, search.text
            error = search.json()["error"]
            assert error["code"] == "index_unavailable" and server.uri in error["message"]
            assert time.monotonic() - started < 60, "each request fails within the Milvus timeout"

            server.start()
            deadline = time.monotonic() + 60
            while api.health()["status"] != "ok" and time.monotonic() < deadline:
                time.sleep(1)
            assert api.health()["index"]["documents"] == 1
            rows = c.post("/v1/search", json={"query": "How do bees show the way?", "k": 1}).json()
            assert rows[0]["source"] == "bees.txt"
            assert isinstance(httpx.get(f"{api.url}/openapi.json").json(), dict)
    finally:
        server.stop()
