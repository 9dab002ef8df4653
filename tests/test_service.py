"""The application service is the one door to the library: what the page and the commands do through it means the
same whoever asks. Real ingest, the real embedding model, the real command in a child process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.index.store import Store
from rag.service import Service, StoreError, Upload
from rag.settings import Settings


def a_library(tmp_path: Path, store: Store) -> tuple[Service, Path]:
    """A folder ingested where it lies (ferry.md) and two uploads (notes.txt, cats.txt); returns the folder."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.md").write_text("# Ferry\n\nThe ferry to the island leaves the harbour at seven every morning.")
    service = Service(store, Settings(index_dir=store.dir))
    assert service.add([docs]).added == ["ferry.md"]
    uploaded = service.upload([Upload("notes.txt", b"The lighthouse keeper writes notes about the weather."),
                               Upload("cats.txt", b"The harbour master's cat is called Biscuit.")])
    assert sorted(uploaded.added) == ["cats.txt", "notes.txt"], uploaded.failed
    return service, docs


def test_list_search_and_delete_round_trip(tmp_path: Path, store: Store) -> None:
    service, docs = a_library(tmp_path, store)
    assert [(d.name, d.chunks) for d in service.documents()] == [("cats.txt", 1), ("ferry.md", 1), ("notes.txt", 1)]

    rows = service.search("What is the cat called?", 2)
    assert [set(row) for row in rows] == [{"rank", "score", "source", "page", "chunk_id", "text", "kind", "section"}] * 2
    assert (rows[0]["rank"], rows[0]["source"], rows[0]["page"]) == (1, "cats.txt", None)
    assert "Biscuit" in str(rows[0]["text"])

    report = service.delete(["cats.txt", "ferry.md", "gone.pdf"])
    assert report.removed == ["cats.txt", "ferry.md"] and [f.path for f in report.failed] == ["gone.pdf"]
    assert [d.name for d in service.documents()] == ["notes.txt"]
    assert {row["source"] for row in service.search("What is the cat called?", 5)} == {"notes.txt"}
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == ["notes.txt"], "the upload's copy went"
    assert (docs / "ferry.md").is_file(), "a file ingested where it lies is not the library's to delete"


@pytest.mark.parametrize("via", ["page", "command", "command-by-path"])
def test_deleting_documents_does_the_same_through_the_page_and_the_command(
    tmp_path: Path, store: Store, store_factory, run_cli, via: str
) -> None:
    """The sidebar's Delete button calls ``Service.delete``; ``python -m ingest --remove`` names documents by label or
    by their file's path. Either way the uploaded document leaves the index with its copy in the upload folder, and
    the document ingested from a folder leaves the index while its file stays."""
    service, docs = a_library(tmp_path, store)
    uploads = tmp_path / "uploads"
    names = ["notes.txt", "ferry.md"]
    if via == "page":
        report = service.delete(names)
        assert report.removed == names and not report.failed
    else:
        if via == "command-by-path":
            names = [str(uploads / "notes.txt"), str(docs / "ferry.md")]
        result = run_cli("ingest", "--remove", *names, "--index", str(store.dir), "--json",
                         env=store_factory.cli_env())
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert (report["removed"], report["failed"], report["added"], report["chunks"]) == (2, [], 0, 0)
    assert [d.name for d in service.documents()] == ["cats.txt"]
    assert sorted(p.name for p in uploads.iterdir()) == ["cats.txt"], "the uploaded copy went with its document"
    assert (docs / "ferry.md").is_file(), "a file ingested where it lies is not the library's to delete"


def test_a_name_not_in_the_index_fails_alone_and_deletes_no_file(
    tmp_path: Path, store: Store, store_factory, run_cli
) -> None:
    service, _ = a_library(tmp_path, store)
    (tmp_path / "uploads" / "stray.txt").write_text("In the upload folder, never ingested.")
    result = run_cli("ingest", "--remove", "stray.txt", "cats.txt", "--index", str(store.dir), "--json",
                     env=store_factory.cli_env())
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["removed"] == 1 and [f["path"] for f in report["failed"]] == ["stray.txt"]
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == ["notes.txt", "stray.txt"]
    assert [d.name for d in service.documents()] == ["ferry.md", "notes.txt"]


def test_a_read_only_service_reads_and_changes_nothing(tmp_path: Path, store: Store) -> None:
    service, docs = a_library(tmp_path, store)
    reader = Service(store, Settings(index_dir=store.dir), read_only=True)
    assert [d.name for d in reader.documents()] == ["cats.txt", "ferry.md", "notes.txt"]
    assert reader.search("When does the ferry leave?", 1)[0]["source"] == "ferry.md"
    changes = [lambda: reader.delete(["notes.txt"]), lambda: reader.upload([Upload("new.txt", b"New text.")]),
               lambda: reader.add([docs]), reader.reindex, lambda: reader.configured(reader.settings).delete(["x"])]
    for change in changes:
        with pytest.raises(StoreError, match="read-only"):
            change()
    assert [d.name for d in service.documents()] == ["cats.txt", "ferry.md", "notes.txt"]
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == ["cats.txt", "notes.txt"]


def test_reading_the_library_creates_no_upload_folder(tmp_path: Path, store: Store) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.md").write_text("The ferry leaves at seven.")
    service = Service(store, Settings(index_dir=store.dir))
    service.add([docs])
    assert service.documents() and service.search("ferry", 1) and service.suggested_questions()
    assert service.page_pdf("ferry.md", 1) is None
    assert not (tmp_path / "uploads").exists()
