"""Ingest → store → search with the real model, real FAISS and real PDFs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import Ingestor
from rag.index.embedder import Embedder, make_embedder
from rag.index.records import StoreError
from rag.index.store import Store
from rag.retrieval.retriever import Retriever
from rag.settings import get_settings
from tests.conftest import ROOT
from tests.documents import encrypt_office_file, make_docx, make_pptx
from tests.pdfs import make_encrypted_pdf, make_pdf, make_scanned_pdf, make_truncated_pdf
from tests.stores import StoreFactory, chunk_ids, searchable_ids

PAGES = [
    "Chapter one. The orchard grows apples, pears and plums along the river.",
    "Chapter two. The capital of Freedonia is Fredville, founded in 1821 by millers.",
    "Chapter three. Winters are cold and the lake freezes every January.",
]


def _corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    make_pdf(folder / "atlas.pdf", PAGES)
    (folder / "notes.txt").write_text("The lighthouse keeper feeds three cats named Tom, Ada and Lin.\n")
    (folder / "guide.md").write_text("# Guide\n\nIntro.\n\n## Boats\n\nThe ferry leaves at seven every morning.\n")
    return folder


def _dense_ids(store: Store) -> set[int]:
    return searchable_ids(store)  # what dense search can return in the current generation


def _chunk_ids(store: Store) -> set[int]:
    return chunk_ids(store)


def test_pdf_page_numbers_come_back_in_search(tmp_path: Path, store: Store, embedder: Embedder) -> None:
    report = Ingestor(store, embedder=embedder).ingest([_corpus(tmp_path / "docs")])
    assert sorted(report.added) == ["atlas.pdf", "guide.md", "notes.txt"] and not report.failed
    hits = Retriever(store, embedder=embedder).search("What is the capital of Freedonia?", 3)
    assert (hits[0].chunk.source, hits[0].chunk.page) == ("atlas.pdf", 2)
    assert "Fredville" in hits[0].chunk.text
    cats = Retriever(store, embedder=embedder).search("names of the cats", 1)[0]
    assert (cats.chunk.source, cats.chunk.page) == ("notes.txt", None)
    ferry = Retriever(store, embedder=embedder).search("when does the ferry leave", 1)[0]
    assert ferry.chunk.section == "Boats"
    assert _dense_ids(store) == _chunk_ids(store)


def test_reingest_of_unchanged_files_embeds_nothing(tmp_path: Path, store: Store, embedder: Embedder) -> None:
    docs = _corpus(tmp_path / "docs")
    Ingestor(store, embedder=embedder).ingest([docs])
    fresh = make_embedder(get_settings())  # a model never loaded: any embedding would load it
    report = Ingestor(store, embedder=fresh).ingest([docs])
    assert sorted(report.unchanged) == ["atlas.pdf", "guide.md", "notes.txt"]
    assert report.added == report.updated == [] and report.chunks == 0
    assert not fresh.loaded


class CountingEmbedder(Embedder):
    """The real model, counting how many texts it is asked to embed and how many calls it takes."""

    def __init__(self, real: Embedder) -> None:
        super().__init__(real.path)
        self.real = real
        self.name = real.name
        self.embedded = 0
        self.batches: list[list[str]] = []

    @property
    def loaded(self) -> bool:
        return self.real.loaded

    def load(self) -> None:
        self.real.load()

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        self.embedded += len(texts)
        self.batches.append(list(texts))
        return self.real.embed_batch(texts)


def test_changed_file_replaces_its_chunks_and_reembeds_only_edits(
    tmp_path: Path, store: Store, embedder: Embedder
) -> None:
    docs = _corpus(tmp_path / "docs")
    paragraphs = [f"Paragraph {i}: the museum keeps exhibit number {i * 37} in hall {i}." for i in range(40)]
    (docs / "museum.txt").write_text("\n\n".join(paragraphs))
    Ingestor(store, embedder=embedder).ingest([docs])
    before = store.document("museum.txt")
    other_ids = {c for c in _chunk_ids(store)} - set(_doc_chunk_ids(store, "museum.txt"))

    paragraphs[-1] = "Paragraph 39: the museum sold its famous blue whale skeleton to Oslo."
    (docs / "museum.txt").write_text("\n\n".join(paragraphs))
    counting = CountingEmbedder(embedder)
    report = Ingestor(store, embedder=counting).ingest([docs])

    assert report.updated == ["museum.txt"] and sorted(report.unchanged) == ["atlas.pdf", "guide.md", "notes.txt"]
    after = store.document("museum.txt")
    assert after.sha256 != before.sha256 and after.added_at == before.added_at
    assert 0 < counting.embedded < after.chunks, "only the edited chunks are embedded again"
    texts = " ".join(c.text for c in store.chunks(_doc_chunk_ids(store, "museum.txt")))
    assert "exhibit number 1443" not in texts and "blue whale" in texts
    assert other_ids <= _chunk_ids(store), "other documents keep their chunks"
    assert _dense_ids(store) == _chunk_ids(store)
    top = Retriever(store, embedder=embedder).search("Where did the whale skeleton go?", 1)[0]
    assert top.chunk.source == "museum.txt" and "Oslo" in top.chunk.text


def _doc_chunk_ids(store: Store, name: str) -> list[int]:
    return sorted(chunk_ids(store, name))


def test_remove_and_folder_sync(tmp_path: Path, store: Store, embedder: Embedder) -> None:
    docs = _corpus(tmp_path / "docs")
    ingestor = Ingestor(store, embedder=embedder)
    ingestor.ingest([docs])

    removed, failed = ingestor.remove(["notes.txt", "nope.pdf"])
    assert removed == ["notes.txt"] and [f.path for f in failed] == ["nope.pdf"]
    assert "no document" in failed[0].error
    hits = Retriever(store, embedder=embedder).search("names of the cats", 5)
    assert all(hit.chunk.source != "notes.txt" for hit in hits)

    (docs / "guide.md").unlink()
    report = ingestor.ingest([docs])
    assert report.removed == ["guide.md"] and report.added == ["notes.txt"]
    assert [d.name for d in store.documents()] == ["atlas.pdf", "notes.txt"]
    assert _dense_ids(store) == _chunk_ids(store)


def test_another_process_sees_writes_and_waits_for_the_lock(tmp_path: Path, store: Store, embedder: Embedder,
                                                           store_factory: StoreFactory) -> None:
    reader = store_factory(store.dir, embed_model=embedder.name, dim=embedder.dim)  # as another process opens it
    assert reader.search_dense(embedder.embed_query("apples"), 3) == []
    Ingestor(store, embedder=embedder).ingest([_corpus(tmp_path / "docs")])
    assert len(reader.search_dense(embedder.embed_query("apples"), 3)) == 3, "the reader picks up the new generation"
    with store.writer():
        with pytest.raises(StoreError, match="another process is writing"):
            with store_factory(store.dir, embed_model=embedder.name, dim=embedder.dim).writer(timeout=0.2):
                pass


def test_index_built_with_another_model_is_refused(tmp_path: Path, embedder: Embedder) -> None:
    Store(tmp_path, embed_model=embedder.name, dim=embedder.dim).close()
    with pytest.raises(StoreError, match="built with embedding model"):
        Store(tmp_path, embed_model="other-model", dim=768)


def _bad_folder(folder: Path) -> dict[str, str]:
    """One good file of each kind and one file per kind of bad input; returns bad name → expected reason."""
    folder.mkdir()
    make_pdf(folder / "good.pdf", PAGES)
    (folder / "good.md").write_text("# Fine\n\nThis Markdown file is fine.\n")
    make_encrypted_pdf(folder / "locked.pdf", ["secret"], password="hunter2")
    make_truncated_pdf(folder / "cut.pdf", ["x " * 3000, "y " * 300])
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.7\n1 0 obj <</Type /Catalog>> garbage\n%%EOF\n")
    make_scanned_pdf(folder / "scan.pdf", ["", ""])  # scanned blank pages: OCR finds nothing either
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.txt").write_bytes(os.urandom(4096))
    (folder / "slides.pptx").write_bytes(b"PK\x03\x04 not really")
    (folder / "report.docx").write_bytes(make_docx(folder / "report.docx", [("p", "word " * 800)]).read_bytes()[:5000])
    encrypt_office_file(make_pptx(folder / "locked.pptx", [{"title": "Secret plans"}]), "hunter2")
    (folder / "blank.html").write_text("<html><head><script>var tracking = 1;</script></head><body></body></html>")
    (folder / "sheet.xlsx").write_bytes(b"PK\x03\x04")
    return {
        "locked.pdf": "password-protected",
        "cut.pdf": "truncated",
        "corrupt.pdf": "corrupt",
        "scan.pdf": "not even by OCR",
        "empty.txt": "empty",
        "binary.txt": "binary",
        "slides.pptx": "PowerPoint file is corrupt",
        "report.docx": "Word file is corrupt or incomplete",
        "locked.pptx": "PowerPoint file is password-protected",
        "blank.html": "no article text",
        "sheet.xlsx": "unsupported file type",
    }


def test_cli_bad_input_folder(tmp_path: Path, run_cli) -> None:
    index = tmp_path / "index"
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "kept.txt").write_text("Stored before the bad batch: the vault code is 4711.")
    assert run_cli("ingest", str(keep), "--index", str(index), "--json").returncode == 0

    expected = _bad_folder(tmp_path / "bad")
    result = run_cli("ingest", str(tmp_path / "bad"), "--index", str(index), "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert {"added", "updated", "unchanged", "removed", "failed", "chunks", "seconds"} <= set(report)
    assert report["added"] == 2 and report["chunks"] > 0
    reasons = {Path(f["path"]).name: f["error"] for f in report["failed"]}
    assert set(reasons) == set(expected)
    for name, reason in expected.items():
        assert reason in reasons[name], (name, reasons[name])
    assert "failed:" in result.stderr and "locked.pdf" in result.stderr

    listing = json.loads(run_cli("ingest", "--list", "--index", str(index), "--json").stdout)
    assert sorted(d["name"] for d in listing) == ["good.md", "good.pdf", "kept.txt"], "nothing stored was lost"

    search = run_cli("rag.search", "vault code", "-k", "2", "--index", str(index), "--json")
    hits = json.loads(search.stdout)
    assert search.returncode == 0 and len(hits) == 2
    assert set(hits[0]) == {"rank", "score", "source", "page", "chunk_id", "text", "kind", "section"}
    assert (hits[0]["rank"], hits[0]["source"], hits[0]["page"]) == (1, "kept.txt", None)
    pdf_hit = json.loads(run_cli("rag.search", "capital of Freedonia", "-k", "1", "--index", str(index), "--json").stdout)
    assert (pdf_hit[0]["source"], pdf_hit[0]["page"]) == ("good.pdf", 2)


def test_a_file_that_breaks_its_loader_fails_alone_with_its_reason(tmp_path: Path, run_cli) -> None:
    """A 5-byte UTF-16 file (byte-order mark, odd length) used to escape as a UnicodeDecodeError traceback that
    stopped the whole batch: any exception while reading one file is that file's failure."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a-good.md").write_text("# Fine\n\nThe ferry leaves at seven.\n")
    (folder / "odd.txt").write_bytes(b"\xff\xfea\x00b")
    (folder / "z-good.txt").write_text("The lighthouse was automated in 1989.")
    result = run_cli("ingest", str(folder), "--index", str(tmp_path / "index"), "--json")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["added"] == 2, "the files after the bad one are ingested too"
    [failure] = report["failed"]
    assert Path(failure["path"]).name == "odd.txt" and failure["type"] and failure["error"]


def test_a_file_name_that_is_not_utf8_fails_alone_with_its_reason(tmp_path: Path, run_cli) -> None:
    """A name with bytes that are not UTF-8 (a disk from another system) used to stop the whole batch with a
    UnicodeEncodeError traceback from SQLite: it is that file's failure, and the JSON report still prints."""
    folder = tmp_path / "names"
    folder.mkdir()
    (folder / "good.txt").write_text("The lighthouse was automated in 1989.")
    with open(os.fsencode(folder) + b"/bad\xff\xfename.txt", "wb") as handle:
        handle.write(b"The ferry leaves at seven.")
    result = run_cli("ingest", str(folder), "--index", str(tmp_path / "index"), "--json")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["added"] == 1
    [failure] = report["failed"]
    assert Path(failure["path"]).name == "bad\ufffd\ufffdname.txt" and "UTF-8" in failure["error"]
    assert failure["type"] == "UnicodeEncodeError"
    removed = run_cli("ingest", "--remove", os.fsdecode(b"bad\xff.txt"), "--index", str(tmp_path / "index"), "--json")
    assert removed.returncode == 1 and "Traceback" not in removed.stderr, removed.stderr
    assert json.loads(removed.stdout)["failed"][0]["error"] == "no document with this name in the index"


class FailingOn(CountingEmbedder):
    """The real model, except that it raises on any batch holding ``word``. A fake because the real model cannot
    be made to fail on one text; the failure it stands for is the model or its server breaking on some input."""

    def __init__(self, real: Embedder, word: str) -> None:
        super().__init__(real)
        self.word = word

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        if any(self.word in text for text in texts):
            raise RuntimeError("the model broke on this text")
        return super().embed_batch(texts)


def test_any_exception_while_reading_splitting_embedding_or_storing_fails_that_file_alone(
    tmp_path: Path, store: Store, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exceptions that are not the loaders' own LoadError, raised in each stage for one file of a batch whose
    files share one embedding window: that file fails with the exception's type and words, the others are stored."""
    import ingest.parse

    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in {"a-reads.txt": "READBREAK", "b-splits.txt": "SPLITBREAK", "c-embeds.txt": "EMBEDBREAK",
                       "d-stores.txt": "STOREBREAK", "e-fine.txt": "The ferry leaves at seven."}.items():
        (docs / name).write_text(f"{text} is in this file about harbours.\n")
    real_load, real_splitter = ingest.parse.load_document, ingest.parse.splitter_for

    def load(path: Path):  # noqa: ANN202
        if path.name == "a-reads.txt":
            raise RecursionError("maximum recursion depth exceeded")
        return real_load(path)

    class Splitter:
        def __init__(self, real) -> None:  # noqa: ANN001
            self.real = real

        def split(self, records):  # noqa: ANN001, ANN202
            if any("SPLITBREAK" in r.text for r in records):
                raise ValueError("the splitter met something it cannot cut")
            return self.real.split(records)

    real_put = store.put_document

    def put(**kwargs):  # noqa: ANN003, ANN202
        if kwargs["path"].name == "d-stores.txt":
            raise sqlite3.DataError("string or blob too big")
        return real_put(**kwargs)

    monkeypatch.setattr(ingest.parse, "load_document", load)
    monkeypatch.setattr(ingest.parse, "splitter_for", lambda config: Splitter(real_splitter(config)))
    monkeypatch.setattr(store, "put_document", put)
    settings = get_settings().model_copy(update={"parse_ahead": False, "embed_window": 64})
    report = Ingestor(store, settings=settings, embedder=FailingOn(embedder, "EMBEDBREAK")).ingest([docs])

    failed = {Path(f.path).name: f for f in report.failed}
    assert sorted(failed) == ["a-reads.txt", "b-splits.txt", "c-embeds.txt", "d-stores.txt"]
    assert (failed["a-reads.txt"].type, failed["b-splits.txt"].type) == ("RecursionError", "ValueError")
    assert (failed["c-embeds.txt"].type, failed["d-stores.txt"].type) == ("RuntimeError", "DataError")
    assert "the model broke on this text" in failed["c-embeds.txt"].error
    assert report.added == ["e-fine.txt"], "the file sharing the failed window is embedded on its own and stored"
    assert [d.name for d in store.documents()] == ["e-fine.txt"]


def test_cli_usage_errors_exit_2(run_cli, tmp_path: Path) -> None:
    assert run_cli("ingest", "--index", str(tmp_path)).returncode == 2
    assert run_cli("ingest", "x.txt", "--list", "--index", str(tmp_path)).returncode == 2
    assert run_cli("rag.search", "q", "-k", "0", "--index", str(tmp_path)).returncode == 2
    for module in ("rag.ask", "rag.agent"):  # both read follow-ups from --history, and refuse a missing file
        missing = run_cli(module, "And when?", "--history", str(tmp_path / "gone.json"), "--index", str(tmp_path))
        assert missing.returncode == 2 and "gone.json" in missing.stderr, missing.stderr


def test_output_piped_into_a_reader_that_stops_early_ends_quietly(run_cli, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    entries = (f"Entry {i}: the pump at station {i} ran for {i % 13} hours." for i in range(4000))
    (docs / "log.txt").write_text("\n".join(entries))
    (docs / "deck.txt").write_text("One line.")
    index = tmp_path / "index"
    assert run_cli("ingest", str(docs), "--index", str(index)).returncode == 0
    listed = run_cli("ingest", "--list", "--index", str(index)).stdout
    assert "\t1 chunk\t" in listed and " chunks\t" in listed, listed  # "1 chunk", not "1 chunks"
    # More than a pipe holds (64 KB), read by `head`, which closes the pipe after 100 bytes.
    command = (f"{sys.executable} -m rag.search 'pump station hours' -k 300 --json --index {index} | head -c 100")
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=300)
    assert len(result.stdout) == 100 and "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, \
        result.stderr


def test_a_broken_index_or_a_bad_setting_exits_2_with_the_reason(run_cli, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "index.sqlite").write_bytes(b"not a database, just bytes " * 100)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("I am a file, not an index folder.")
    for module, *args in [("rag.search", "q"), ("rag.ask", "q"), ("ingest", "--list")]:
        for index, reason in ((broken, "cannot open the index"), (a_file, "there is no index at this path")):
            result = run_cli(module, *args, "--index", str(index))
            assert result.returncode == 2 and "Traceback" not in result.stderr, (module, index, result.stderr)
            assert f"error: {index}: {reason}" in result.stderr, result.stderr
    assert (broken / "index.sqlite").read_bytes().startswith(b"not a database"), "the broken file is left as it was"
    for module, *args in [("rag.search", "q"), ("ingest", "--list"), ("rag.ask", "q")]:
        result = run_cli(module, *args, "--index", str(tmp_path / "index"), env={"RAG_TOP_K": "abc"})
        assert result.returncode == 2 and "Traceback" not in result.stderr, (module, result.stderr)
        assert "error: invalid setting (RAG_TOP_K: Input should be a valid integer" in result.stderr, result.stderr


def test_crash_mid_ingest_leaves_an_index_that_opens_and_answers(tmp_path: Path, embedder: Embedder) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(60):
        body = " ".join(f"Report {i} line {j}: station {i} measured {i * 10 + j} millimetres of rain." for j in range(40))
        (docs / f"report_{i:02d}.txt").write_text(body)
    index = tmp_path / "index"
    child = subprocess.Popen(
        [sys.executable, "-m", "ingest", str(docs), "--index", str(index)],
        # Small embedding windows, so files are stored one after another while the rest still embed.
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "RAG_EMBED_WINDOW": "4"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    stored = 0
    while time.monotonic() < deadline and stored < 3:
        time.sleep(0.2)
        try:
            with sqlite3.connect(index / "index.sqlite") as db:
                stored = db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        except sqlite3.OperationalError:
            pass  # not created yet
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert 3 <= stored < 60, "killed partway through"

    store = Store(index, embed_model=embedder.name, dim=embedder.dim)
    names = [d.name for d in store.documents()]
    assert 3 <= len(names) < 60
    assert _dense_ids(store) == _chunk_ids(store), "vectors and rows agree after the crash"
    top = Retriever(store, embedder=embedder).search("How much rain did station 1 measure?", 3)
    assert top and all(hit.chunk.source in names for hit in top)
    assert np.isfinite([hit.score for hit in top]).all()

    report = Ingestor(store, embedder=embedder).ingest([docs])
    assert not report.failed and len(report.unchanged) == len(names) and len(report.added) == 60 - len(names)
    assert _dense_ids(store) == _chunk_ids(store)
    store.close()
