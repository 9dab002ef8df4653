"""Fan-out ingest (ingest/fanout.py) on a real Dask cluster: one LocalCluster of two worker processes on 127.0.0.1
for the module, the real embedding model in every worker, real FAISS + SQLite indexes and real files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from distributed import Client, LocalCluster, WorkerPlugin

from ingest.fanout import local_cluster
from ingest.pipeline import Ingestor
from ingest.report import IngestReport
from rag.errors import ClusterError, EmbeddingError
from rag.index.embedder import Embedder, OnnxEmbedder
from rag.index.records import indexed_text, sha256_text
from rag.index.store import Store
from rag.settings import Settings, get_settings
from tests.conftest import ROOT
from tests.documents import make_docx
from tests.pdfs import make_pdf, make_scanned_pdf
from tests.stores import chunk_ids
from tests.test_ingest import PAGES, _bad_folder


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(2) as cluster:
        yield cluster


def _on(cluster: LocalCluster) -> Settings:
    return get_settings().changed(ingest_cluster=cluster.scheduler_address)


def _corpus(folder: Path) -> Path:
    (folder / "sub").mkdir(parents=True)
    make_pdf(folder / "atlas.pdf", PAGES)
    (folder / "notes.txt").write_text("The lighthouse keeper feeds three cats named Tom, Ada and Lin.\n")
    (folder / "guide.md").write_text("# Guide\n\nIntro.\n\n## Boats\n\nThe ferry leaves at seven every morning.\n")
    (folder / "sub" / "guide.md").write_text("# Trains\n\nThe night train to Fredville stops twice.\n" * 40)
    make_docx(folder / "sub" / "memo.docx", [("heading1", "Memo"), ("p", "The vault code changed to 4711 in May.")])
    return folder


def _ingest(folder: Path, index: Path, embedder: Embedder, settings: Settings | None = None) -> IngestReport:
    store = Store(index, embed_model=embedder.name, dim=embedder.dim)
    try:
        return Ingestor(store, embedder=embedder, settings=settings).ingest([folder])
    finally:
        store.close()


def _contents(index: Path, embedder: Embedder) -> tuple[list[tuple], list[tuple], np.ndarray]:
    """The documents, the chunks (by document and position, not by id: files come back in any order) and the
    chunks' vectors, read through the store interface."""
    store = Store(index, embed_model=embedder.name, dim=embedder.dim)
    try:
        documents = sorted((d.name, d.kind, d.sha256, d.size, d.pages, d.chunks, d.recipe) for d in store.documents())
        rows = sorted(store.chunks(sorted(chunk_ids(store))), key=lambda c: (c.source, c.ordinal))
        chunks = [(c.source, c.ordinal, c.page, c.section, c.start, c.end, c.context, c.text) for c in rows]
        hashes = [sha256_text(indexed_text(c.text, c.context)) for c in rows]
        vectors = store.vectors_by_sha(hashes)
        return documents, chunks, np.vstack([vectors[h] for h in hashes])
    finally:
        store.close()


# A scanned page is read by OCR on a worker: seconds in each run (the engine loads, the page is drawn at 300 dpi).
@pytest.mark.parametrize("scanned", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["text", "scanned"])
def test_the_workers_make_the_same_index_as_one_process(tmp_path: Path, embedder: Embedder, cluster: LocalCluster,
                                                         scanned: bool) -> None:
    docs = _corpus(tmp_path / "docs")
    if scanned:
        make_scanned_pdf(docs / "sub" / "scan.pdf", ["The harbour master rings the bell at noon on Sundays."])
    here = _ingest(docs, tmp_path / "here", embedder)
    fanned = _ingest(docs, tmp_path / "fanned", embedder, _on(cluster))
    assert sorted(fanned.added) == sorted(here.added) == ["atlas.pdf", "guide.md", "notes.txt", "sub/guide.md",
                                                          "sub/memo.docx"] + ["sub/scan.pdf"] * scanned
    assert not fanned.failed and fanned.chunks == here.chunks and fanned.ocr_pages == here.ocr_pages == scanned
    documents, chunks, vectors = _contents(tmp_path / "fanned", embedder)
    expected_documents, expected_chunks, expected_vectors = _contents(tmp_path / "here", embedder)
    assert documents == expected_documents and chunks == expected_chunks
    assert np.allclose(vectors, expected_vectors, atol=1e-5)


def test_unchanged_files_are_skipped_without_the_cluster(tmp_path: Path, embedder: Embedder,
                                                         cluster: LocalCluster) -> None:
    docs = _corpus(tmp_path / "docs")
    assert not _ingest(docs, tmp_path / "index", embedder, _on(cluster)).failed
    # Nothing to read: no scheduler is even asked (none answers at this address).
    nowhere = get_settings().changed(ingest_cluster=f"tcp://127.0.0.1:{_free_port()}", ingest_cluster_timeout=1)
    again = _ingest(docs, tmp_path / "index", embedder, nowhere)
    assert len(again.unchanged) == 5 and again.added == again.updated == [] and again.chunks == 0
    (docs / "notes.txt").write_text("The lighthouse keeper now feeds four cats.\n")
    edited = _ingest(docs, tmp_path / "index", embedder, _on(cluster))
    assert edited.updated == ["notes.txt"] and len(edited.unchanged) == 4 and not edited.failed


def test_bad_files_fail_alone_with_the_reasons_one_process_gives(tmp_path: Path, embedder: Embedder,
                                                                cluster: LocalCluster) -> None:
    expected = _bad_folder(tmp_path / "docs")
    (tmp_path / "docs" / "scan.pdf").unlink()  # OCR over blank pages: seconds, and OCR is above already
    del expected["scan.pdf"]
    fanned = _ingest(tmp_path / "docs", tmp_path / "fanned", embedder, _on(cluster))
    here = _ingest(tmp_path / "docs", tmp_path / "here", embedder)
    assert sorted(fanned.added) == sorted(here.added) == ["good.md", "good.pdf"]
    reasons = {Path(f.path).name: (f.error, f.type) for f in fanned.failed}
    assert set(reasons) == set(expected)
    assert all(expected[name] in error for name, (error, _) in reasons.items()), reasons
    assert reasons == {Path(f.path).name: (f.error, f.type) for f in here.failed}


class CrashOn(WorkerPlugin):
    """Test-only: a loader for ``.crash`` files that ends the worker process at once, as a parser killed by a
    hostile file or by the kernel's OOM killer would. A fake is needed: no real file crashes our loaders on demand.
    Registered as a worker plugin, so the workers the nannies start again after the crash have it too."""

    def setup(self, worker: object) -> None:
        import ingest.loaders

        ingest.loaders._LOADERS[".crash"] = lambda path, data: os._exit(17)


@pytest.mark.parametrize("crashing, more", [(["boom.crash"], 0), (["a-boom.crash", "z-boom.crash"], 6)],
                         ids=["one", "two among more files"])
def test_a_file_that_kills_its_worker_fails_alone(tmp_path: Path, embedder: Embedder, crashing: list[str],
                                                  more: int) -> None:
    """Each crashing file fails with its own reason and every other file is stored, whichever files shared a
    worker with a crash (each suspect runs again alone, and nothing new goes out beside it). On a cluster of its
    own: the nannies start crashed workers again in their own time (in a full run of the suite, after the tests
    that followed had found none), and the other tests need their workers."""
    docs = _corpus(tmp_path / "docs")
    for n in range(more):
        (docs / f"more-{n}.txt").write_text(f"Harbour note {n}: the ferry {n} leaves at {n + 6} o'clock.\n")
    for name in crashing:
        (docs / name).write_text(f"{name} ends whichever worker reads it")  # not the same bytes: both are read
    with local_cluster(2) as cluster, Client(cluster.scheduler_address, set_as_default=False) as client:
        client.register_plugin(CrashOn(), name="crash-on")
        try:
            report = _ingest(docs, tmp_path / "index", embedder, _on(cluster))
        finally:
            client.unregister_worker_plugin("crash-on")
    assert sorted((Path(f.path).name, f.type) for f in report.failed) == [(n, "WorkerCrashed") for n in crashing]
    assert all("worker process stopped" in f.error for f in report.failed)
    assert len(report.added) == 5 + more


class LeaveOn(WorkerPlugin):
    """Test-only: a loader for ``.leave`` files that ends the worker process at once. The worker runs without a
    nanny, as ``dask worker --no-nanny`` on another machine: nothing starts it again, as for a machine switched
    off (a fake: no real file switches a machine off)."""

    def setup(self, worker: object) -> None:
        import ingest.loaders

        ingest.loaders._LOADERS[".leave"] = lambda path, data: os._exit(17)


def test_a_cluster_left_without_workers_ends_the_run_with_the_files_so_far_kept(tmp_path: Path,
                                                                                embedder: Embedder) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a-notes.txt").write_text("The lighthouse keeper feeds three cats named Tom, Ada and Lin.\n")
    (docs / "b-switch-off.leave").write_text("this file switches the only worker's machine off")
    with LocalCluster(n_workers=0, host="127.0.0.1", scheduler_port=0, dashboard_address=None) as lonely, \
            Client(lonely.scheduler_address, set_as_default=False) as client:
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", lonely.scheduler_address, "--no-nanny",
             "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client.wait_for_workers(1, timeout=60)
            client.register_plugin(LeaveOn(), name="leave-on")
            settings = get_settings().changed(ingest_cluster=lonely.scheduler_address, ingest_cluster_timeout=3)
            store = Store(tmp_path / "index", embed_model=embedder.name, dim=embedder.dim)
            try:
                with pytest.raises(ClusterError, match=r"has had no workers for 3 s; the files stored so far are kept"):
                    Ingestor(store, embedder=embedder, settings=settings).ingest([docs])
                assert [d.name for d in store.documents()] in ([], ["a-notes.txt"])  # what came back first is kept
            finally:
                store.close()
            assert worker.wait(timeout=10) == 17, "the worker ended where the file said"
        finally:
            worker.kill()
            worker.wait()


def test_a_worker_that_cannot_make_the_index_vectors_stops_the_run(tmp_path: Path, cluster: LocalCluster) -> None:
    """A fake stands in for another model (none other is installed): the int8 model under another name, as an
    index built elsewhere with a model these workers do not have would record it."""

    class Elsewhere(OnnxEmbedder):
        def __init__(self) -> None:
            super().__init__(int8=True)
            self.name = "all-MiniLM-L6-v2-elsewhere"

    other = Elsewhere()
    docs = _corpus(tmp_path / "docs")
    with pytest.raises(EmbeddingError, match=r"worker tcp://127\.0\.0\.1:\d+ runs the embedding model "
                                             r"all-MiniLM-L6-v2-int8 .* not all-MiniLM-L6-v2-elsewhere"):
        _ingest(docs, tmp_path / "index", other, _on(cluster))


def test_a_worker_with_another_version_of_the_chunking_code_is_refused(tmp_path: Path, embedder: Embedder,
                                                                       cluster: LocalCluster,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Its chunks would be stored under this process's recipe and never made again. The version is changed in this
    process (the workers run the code as it is): the same as a machine whose project is older."""
    import ingest.fanout

    monkeypatch.setattr(ingest.fanout, "SPLITTER_VERSION", ingest.fanout.SPLITTER_VERSION + 1)
    with pytest.raises(ClusterError, match=r"worker tcp://127\.0\.0\.1:\d+ cuts chunks with the project's splitter "
                                           r"version \d+, this ingest with version \d+"):
        _ingest(_corpus(tmp_path / "docs"), tmp_path / "index", embedder, _on(cluster))


def _worker_environ() -> dict[str, str | None]:
    return {key: os.environ.get(key) for key in ("RAG_EMBED_THREADS", "RAG_OCR_THREADS", "MALLOC_TRIM_THRESHOLD_")}


def test_the_local_cluster_shares_the_cores_and_leaves_this_process_alone(cluster: LocalCluster) -> None:
    """Each worker's ONNX Runtime threads are its share of the cores, and glibc's trim threshold is not set (see
    ingest.fanout.local_cluster); Dask's nannies set those in this process's environment too, which is put back."""
    share = str(max(1, (os.cpu_count() or 1) // 2))
    settings = get_settings()
    expected = {"RAG_EMBED_THREADS": str(settings.embed_threads or share),
                "RAG_OCR_THREADS": str(settings.ocr_threads or share), "MALLOC_TRIM_THRESHOLD_": None}
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        assert list(client.run(_worker_environ).values()) == [expected, expected]
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ
    assert os.environ.get("RAG_OCR_THREADS") == (str(settings.ocr_threads) if settings.ocr_threads else None)


def test_cli_cluster_option_reaches_a_scheduler_started_elsewhere(tmp_path: Path, embedder: Embedder,
                                                                  cluster: LocalCluster, run_cli) -> None:
    docs = _corpus(tmp_path / "docs")
    assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    assert all(w.startswith("tcp://127.0.0.1:") for w in cluster.scheduler_info["workers"])
    done = run_cli("ingest", str(docs), "--index", str(tmp_path / "index"), "--cluster", cluster.scheduler_address,
                   "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["added"] == 5 and report["failed"] == []
    here = _ingest(docs, tmp_path / "here", embedder)
    assert report["chunks"] == here.chunks


def test_cli_names_the_address_when_no_scheduler_answers(tmp_path: Path, run_cli) -> None:
    docs = _corpus(tmp_path / "docs")
    address = f"tcp://127.0.0.1:{_free_port()}"
    done = run_cli("ingest", str(docs), "--index", str(tmp_path / "index"), "--cluster", address, "--json",
                   env={"RAG_INGEST_CLUSTER_TIMEOUT": "2"})
    assert done.returncode == 1 and done.stdout == ""
    assert f"error: no Dask scheduler answers at {address}" in done.stderr


def test_cli_workers_option_starts_and_stops_a_local_cluster(tmp_path: Path, embedder: Embedder, run_cli) -> None:
    docs = _corpus(tmp_path / "docs")
    # a scheduler named in the environment that answers nowhere: the option wins over it
    done = run_cli("ingest", str(docs), "--index", str(tmp_path / "index"), "--workers", "2", "--json",
                   env={"RAG_INGEST_CLUSTER": f"tcp://127.0.0.1:{_free_port()}", "RAG_INGEST_CLUSTER_TIMEOUT": "2"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["added"] == 5
    _, chunks, _ = _contents(tmp_path / "index", embedder)
    assert len(chunks) == _ingest(docs, tmp_path / "here", embedder).chunks


def _free_port() -> int:
    """A loopback port nothing listens on (taken and given back)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
