"""Uploads are untrusted: names are sanitised, nothing escapes the upload folder, nothing is silently replaced."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfReader

from rag.service.library import Library, Upload, UploadError, sanitize_filename
from rag.index.store import Store
from rag.settings import Settings
from tests.pdfs import make_encrypted_pdf, make_pdf


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\windows\\win.ini.md", "win.ini.md"),
        ("/abs/path/Report 2024.PDF", "Report 2024.pdf"),
        (".hidden.md", "hidden.md"),
        ("..", "document"),
        ("a\x00b\u202e.txt", "ab.txt"),
        ("tab\tand|pipe?.md", "taband_pipe.md"),
        ("Café – notes.md", "Café _ notes.md"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
        ("界" * 120 + ".md", "界" * 65 + ".md"),  # names are cut in bytes (3 a character here), whole characters kept
    ],
)
def test_sanitize_filename(raw: str, safe: str) -> None:
    assert sanitize_filename(raw) == safe


def test_saving_never_leaves_the_folder_nor_overwrites(tmp_path: Path, store: Store) -> None:
    library = Library(store, settings=Settings(index_dir=store.dir))
    first = library.save(Upload("../../report.txt", b"first"))
    assert first.path == tmp_path / "uploads" / "report.txt"
    again = library.save(Upload("report.txt", b"first"))
    assert again.path == first.path, "the same bytes reuse the same file"
    other = library.save(Upload("sub/dir/report.txt", b"second"))
    assert other.path.name == "report (2).txt" and first.path.read_bytes() == b"first"
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == ["report (2).txt", "report.txt"]


def test_long_non_latin_names_fit_the_file_system(tmp_path: Path, store: Store) -> None:
    """120 CJK characters are 360 bytes: cut by characters they gave ENAMETOOLONG; numbered copies fit too."""
    library = Library(store, settings=Settings(index_dir=store.dir))
    name = "報告" * 60 + ".txt"
    first, second = library.save(Upload(name, b"one")), library.save(Upload(name, b"two"))
    assert first.path.read_bytes() == b"one" and second.path.read_bytes() == b"two"
    assert second.path.name.endswith(" (2).txt") and len(second.path.name.encode()) <= 255


def test_two_sessions_saving_the_same_name_at_once_keep_both_files(tmp_path: Path, store: Store) -> None:
    """Eight threads (as eight browser sessions) save different bytes under one name at the same moment."""
    import threading

    library = Library(store, settings=Settings(index_dir=store.dir))
    barrier = threading.Barrier(8)
    saved: dict[int, Path] = {}

    def upload(i: int) -> None:
        barrier.wait()
        saved[i] = library.save(Upload("minutes.txt", f"meeting {i}".encode())).path

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({path.name for path in saved.values()}) == 8, "each upload got its own file"
    for i, path in saved.items():
        assert path.read_bytes() == f"meeting {i}".encode(), "no upload replaced another's bytes"
    assert not list(library.folder.glob(".upload-*")), "no temporary file is left behind"


def test_oversized_and_unsupported_uploads_are_refused_before_writing(tmp_path: Path, store: Store) -> None:
    library = Library(store, settings=Settings(index_dir=store.dir, max_upload_mb=1))
    with pytest.raises(UploadError, match=r"big.pdf: 2.0 MB is over the 1 MB limit"):
        library.save(Upload("big.pdf", b"x" * (2 * 1024 * 1024)))
    with pytest.raises(UploadError, match="sheet.xlsx: unsupported file type"):
        library.save(Upload("sheet.xlsx", b"PK"))
    report = library.add([Upload("sheet.xlsx", b"PK"), Upload("slides.pptx", b"PK\x03\x04 cut short"),
                          Upload("ok.txt", b"The ferry leaves at seven.")])
    assert report.added == ["ok.txt"]
    assert {f.path: f.error.split(" (")[0] for f in report.failed} == {
        "sheet.xlsx": "unsupported file type; supported: .pdf, .txt, .md, .markdown, .docx, .pptx, .html, .htm",
        "slides.pptx": "the PowerPoint file is corrupt or incomplete",
    }
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == ["ok.txt"], "failed files are not kept"


def test_delete_and_reindex_keep_counts_true(tmp_path: Path, store: Store) -> None:
    library = Library(store, settings=Settings(index_dir=store.dir))
    library.add([Upload("a.txt", b"Alpha text about apples."), Upload("b.md", b"# B\n\nBeta text about boats.")])
    assert [(d.name, d.chunks) for d in library.documents()] == [("a.txt", 1), ("b.md", 1)]
    report = library.reindex()
    assert sorted(report.updated) == ["a.txt", "b.md"] and not report.failed
    assert library.delete(["a.txt"]).removed == ["a.txt"]
    assert [f.path for f in library.delete(["a.txt"]).failed] == ["a.txt"], "deleted once"
    assert [d.name for d in library.documents()] == ["b.md"] and store.chunk_count() == 1
    assert not (tmp_path / "uploads" / "a.txt").exists()
    (tmp_path / "uploads" / "b.md").unlink()
    report = library.reindex()
    assert [f.path for f in report.failed] == ["b.md"] and "no longer on disk" in report.failed[0].error
    assert [d.name for d in library.documents()] == ["b.md"], "a missing file does not silently drop the document"


def test_a_cited_pdf_page_can_be_shown_until_its_file_changes(tmp_path: Path, store: Store) -> None:
    library = Library(store, settings=Settings(index_dir=store.dir))
    pdf = make_pdf(tmp_path / "src.pdf", ["Page one is about rivers.", "Page two is about the harbour crane."])
    locked = make_encrypted_pdf(tmp_path / "locked.pdf", ["Open with an empty password.", "Second page."], password="")
    report = library.add([Upload("guide.pdf", pdf.read_bytes()), Upload("locked.pdf", locked.read_bytes()),
                          Upload("notes.txt", b"Plain text has no pages.")])
    assert sorted(report.added) == ["guide.pdf", "locked.pdf", "notes.txt"], report.failed

    one_page = PdfReader(io.BytesIO(library.page_pdf("guide.pdf", 2)))
    assert len(one_page.pages) == 1 and "harbour crane" in one_page.pages[0].extract_text()
    assert "Second page" in PdfReader(io.BytesIO(library.page_pdf("locked.pdf", 2))).pages[0].extract_text()
    assert library.page_pdf("guide.pdf", 3) is None and library.page_pdf("guide.pdf", 0) is None
    assert library.page_pdf("notes.txt", 1) is None and library.page_pdf("missing.pdf", 1) is None

    (tmp_path / "uploads" / "guide.pdf").write_bytes(make_pdf(tmp_path / "other.pdf", ["Changed."]).read_bytes())
    assert library.page_pdf("guide.pdf", 1) is None, "a changed file is not the page the passage came from"


@pytest.mark.parametrize("shared", [True, False], ids=["another-session-same-store", "another-process-handle"])
def test_an_upload_while_another_session_ingests_says_it_waits_then_why_it_failed(
    store: Store, embedder, shared: bool, store_factory
) -> None:
    """Another writer holds the lock for longer than ``write_wait_seconds``: the upload reports that it waits, then
    fails with the reason, keeps no file and stores nothing. The writer is another thread on the same ``Store`` (the
    app shares one between its sessions) or a second handle on the index (another process)."""
    import threading

    from ingest.report import Progress

    library = Library(store, settings=Settings(index_dir=store.dir, write_wait_seconds=1.0))
    # another handle on the same index, of the backend under test (the factory closes it)
    other = store if shared else store_factory(store.dir, embed_model=embedder.name, dim=embedder.dim)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with other.writer():
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(30)
    events: list[Progress] = []
    try:
        report = library.add([Upload("notes.txt", b"The ferry leaves at seven.")], events.append)
    finally:
        release.set()
        thread.join()
    assert [e.stage for e in events] == ["waiting"] and "another ingest" in events[0].message
    [failure] = report.failed
    assert failure.path == "notes.txt" and "busy" in failure.error and failure.type == "StoreError"
    assert not list(library.folder.iterdir()) and not store.documents()


def test_delete_and_reindex_while_another_session_ingests_fail_with_the_reason_and_change_nothing(
    store: Store, embedder, store_factory
) -> None:
    """As the upload above: a second handle holds the writer's lock past ``write_wait_seconds``. Deleting raises the
    store's readable "busy" error (the sidebar shows it) and re-indexing reports each file as failed; the document,
    its file and its passages are all still there."""
    import threading

    from rag.index.records import StoreError

    library = Library(store, settings=Settings(index_dir=store.dir, write_wait_seconds=1.0))
    library.add([Upload("notes.txt", b"The ferry leaves at seven.")])
    [doc] = store.documents()
    other = store_factory(store.dir, embed_model=embedder.name, dim=embedder.dim)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with other.writer():
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(30)
    try:
        with pytest.raises(StoreError, match="busy"):
            library.delete([doc.name])
        report = library.reindex()
    finally:
        release.set()
        thread.join()
        other.close()
    [failure] = report.failed
    assert failure.type == "StoreError" and "busy" in failure.error and failure.path.endswith("notes.txt")
    assert [d.name for d in store.documents()] == ["notes.txt"] and Path(doc.path).is_file()
    assert store.documents()[0].chunks == doc.chunks
