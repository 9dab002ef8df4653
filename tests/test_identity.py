"""Document identity across machines (``rag.index.identity``): the same file is one document whatever path, link,
mount or host reads it, and two hosts' own files never collide. The store tests run on both backends through
``store`` / ``store_factory`` with the real embedding model; the "hosts" are ingest processes with different
``RAG_HOST_ID`` writing into one index (one Milvus, one embedded folder).

There is no network filesystem on this machine (no NFS or SMB server, no rights to mount one), so the network
case is tested on the pure functions with mount tables given as text, as ``/proc/self/mountinfo`` shows them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.pipeline import Ingestor
from rag.index.embedder import Embedder
from rag.index.identity import document_key, key_of, local_path, parse_mountinfo
from rag.index.milvus import MilvusStore
from rag.index.store import Store
from rag.retrieval.retriever import Retriever
from rag.settings import get_settings
from tests.conftest import ROOT
from tests.stores import StoreFactory, chunk_ids

# Two hosts mounting one NFS export at different places (host one twice: the same share at two mount points), and
# a cifs share; host one's own disk is ext4.
HOST_ONE = r"""22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:50 / /mnt/reports rw,relatime shared:30 - nfs4 files.example.org:/export rw,vers=4.2,addr=10.0.0.5
41 22 0:50 / /srv/team\040share rw,relatime shared:31 - nfs4 files.example.org:/export rw,vers=4.2
42 22 0:51 / /mnt/win rw,relatime shared:32 - cifs //winbox/Docs rw,vers=3.1.1
"""
HOST_TWO = r"""25 1 253:0 / / rw,relatime shared:1 - xfs /dev/mapper/root rw
61 25 0:60 /q3 /data/q3 rw,relatime shared:40 - nfs files.example.org:/export rw,vers=3
62 25 0:61 / /home/ann/remote rw,nosuid shared:41 - fuse.sshfs ann@files.example.org:/export rw
"""


def test_the_same_share_at_two_mount_points_and_on_two_hosts_is_one_key() -> None:
    one, two = parse_mountinfo(HOST_ONE), parse_mountinfo(HOST_TWO)
    assert [m.point for m in one] == ["/", "/mnt/reports", "/srv/team share", "/mnt/win"], "octal escapes read"
    key = key_of("/mnt/reports/q3/summary.pdf", one, "host-one")
    assert key == "nfs://files.example.org:/export/q3/summary.pdf"
    assert key_of("/srv/team share/q3/summary.pdf", one, "host-one") == key, "two mount points, one key"
    assert key_of("/data/q3/summary.pdf", two, "host-two") == key, "another host mounting a subfolder (NFS v3)"
    assert key_of("/mnt/win/Plan.docx", one, "host-one") == "cifs://winbox/Docs/Plan.docx"
    assert key_of("/home/ann/remote/q3/summary.pdf", two, "host-two") == "sshfs://files.example.org:/export/q3/summary.pdf"
    # back from a key to where each host reads it
    assert local_path(key, table=one, host="host-one") in ("/mnt/reports/q3/summary.pdf", "/srv/team share/q3/summary.pdf")
    assert local_path(key, table=two, host="host-two") == "/data/q3/summary.pdf"
    assert local_path("cifs://winbox/Docs/Plan.docx", table=two, host="host-two") is None, "not mounted there"


def test_local_files_are_keyed_by_host_and_resolved(tmp_path: Path) -> None:
    table = parse_mountinfo(HOST_ONE)
    assert key_of("/data/report.pdf", table, "host-one") == "file://host-one/data/report.pdf"
    assert key_of("/data/report.pdf", table, "host-one") != key_of("/data/report.pdf", table, "host-two")
    assert local_path("file://host-one/data/report.pdf", table=table, host="host-one") == "/data/report.pdf"
    assert local_path("file://host-one/data/report.pdf", table=table, host="host-two") is None
    assert local_path("/data/report.pdf", table=table, host="host-two") == "/data/report.pdf", "an old plain path"
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.txt").write_text("a")
    (tmp_path / "link").symlink_to(real)
    assert document_key(tmp_path / "link" / "a.txt") == document_key(real / "a.txt")
    assert document_key(real / "a.txt").startswith("file://")


def _folder(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


NOTES = {
    "bees.txt": "Honey bees tell the hive where flowers are with a waggle dance.\n",
    "trains.txt": "The Glacier Express crosses 291 bridges between Zermatt and St. Moritz.\n",
}


def test_a_folder_reached_through_a_symlink_is_indexed_once(tmp_path: Path, store, embedder: Embedder) -> None:
    docs = _folder(tmp_path / "docs", NOTES)
    (tmp_path / "link").symlink_to(docs)
    ingestor = Ingestor(store, embedder=embedder)
    first = ingestor.ingest([docs, tmp_path / "link"])
    assert sorted(first.added) == ["bees.txt", "trains.txt"] and first.unchanged == []
    again = ingestor.ingest([tmp_path / "link"])
    assert again.added == again.updated == again.removed == [] and sorted(again.unchanged) == ["bees.txt", "trains.txt"]
    assert [d.name for d in store.documents()] == ["bees.txt", "trains.txt"]
    (docs / "trains.txt").unlink()  # gone, seen through the link
    assert ingestor.ingest([tmp_path / "link"]).removed == ["trains.txt"]
    removed, failed = ingestor.remove([str(tmp_path / "link" / "bees.txt")])  # by a path through the link
    assert removed and not failed and store.documents() == []


def test_the_same_bytes_under_two_names_are_indexed_once(tmp_path: Path, store, embedder: Embedder) -> None:
    docs = _folder(tmp_path / "docs", NOTES)
    (docs / "copy of bees.txt").write_text(NOTES["bees.txt"])
    os.link(docs / "trains.txt", docs / "trains-hardlink.txt")
    ingestor = Ingestor(store, embedder=embedder)
    report = ingestor.ingest([docs])
    assert sorted(report.added) == ["bees.txt", "trains-hardlink.txt"] or sorted(report.added) == ["bees.txt", "trains.txt"]
    assert len(report.unchanged) == 2 and all("same content as" in n.note for n in report.notes)
    assert len(store.documents()) == 2 and len(chunk_ids(store)) == 2
    hits = Retriever(store, embedder=embedder).search("waggle dance of honey bees", 5)
    assert [h.chunk.source for h in hits].count("bees.txt") == 1, "one passage, not the same one twice"
    again = ingestor.ingest([docs])
    assert again.added == again.updated == again.removed == [] and len(again.unchanged) == 4
    (docs / "bees.txt").unlink()  # the first name gone: the copy is indexed now
    third = ingestor.ingest([docs])
    assert third.removed == ["bees.txt"] and third.added == ["copy of bees.txt"]


def _ingest_as(host: str, cwd: Path, index: Path, env: dict[str, str], *args: str) -> dict:
    """``python -m ingest`` in its own process, as the host ``host`` (RAG_HOST_ID) working in ``cwd``."""
    result = subprocess.run(
        [sys.executable, "-m", "ingest", *args, "--index", str(index), "--json"], cwd=cwd, capture_output=True,
        text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT), "RAG_HOST_ID": host, **env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_two_hosts_writing_into_one_index_never_collide_or_duplicate(
    tmp_path: Path, embedder: Embedder, store_factory: StoreFactory
) -> None:
    index, env = tmp_path / "index", store_factory.cli_env()
    # Two working folders, one per host, each ingesting its own "data" folder.
    alpha, beta = tmp_path / "alpha", tmp_path / "beta"
    _folder(alpha / "data", {"report.txt": "Alpha site report: the north turbine produced 41 megawatt hours.\n"})
    _folder(beta / "data", {"report.txt": "Beta site report: the harbour crane lifted 900 containers.\n"})
    assert _ingest_as("alpha", alpha, index, env, "data")["added"] == 1
    assert _ingest_as("beta", beta, index, env, "data")["added"] == 1
    for host, cwd in (("alpha", alpha), ("beta", beta)):  # each re-ingest: its own file unchanged, the other's kept
        again = _ingest_as(host, cwd, index, env, "data")
        assert (again["added"], again["updated"], again["unchanged"], again["removed"]) == (0, 0, 1, 0)
    # Each host's own /same/path/report.txt: one folder path, read by alpha, then (its content now beta's) by beta.
    shared = _folder(tmp_path / "same" / "data", {"report.txt": "Alpha archive: the old turbine ran 12 years.\n"})
    assert _ingest_as("alpha", tmp_path, index, env, str(shared))["added"] == 1
    (shared / "report.txt").write_text("Beta archive: the old crane was painted blue in 1990.\n")
    assert _ingest_as("beta", tmp_path, index, env, str(shared))["added"] == 1, "beta's file is not alpha's"
    again = _ingest_as("beta", tmp_path, index, env, str(shared))
    assert (again["added"], again["updated"], again["unchanged"], again["removed"]) == (0, 0, 1, 0)

    store = store_factory(index, embed_model=embedder.name, dim=embedder.dim)
    docs = store.documents()
    assert len(docs) == 4 and len({d.key for d in docs}) == 4 and len({d.name for d in docs}) == 4
    same = sorted(d.name for d in docs if d.key.endswith("/same/data/report.txt"))
    assert same[0].startswith("alpha/") and same[1].startswith("beta/"), same
    assert sorted(d.name for d in docs if d.key.startswith("file://alpha/"))[0].startswith("alpha/")
    retriever = Retriever(store, embedder=embedder)
    assert retriever.search("painted crane", 1)[0].chunk.source == same[1]
    assert retriever.search("how long did the old turbine run", 1)[0].chunk.source == same[0]
    store_factory.assert_consistent(store)

    (shared / "report.txt").unlink()  # gone for beta, which removes its own document only
    gone = _ingest_as("beta", tmp_path, index, env, str(shared))
    assert gone["removed"] == 1
    assert sorted(d.key.split("/")[2] for d in store.documents()) == ["alpha", "alpha", "beta"]


def _make_old_embedded(index: Path) -> None:
    """Turn an index into what the previous release wrote (schema 2): no key column, documents unique by their
    absolute path."""
    with sqlite3.connect(index / "index.sqlite") as db:
        db.execute("DROP INDEX documents_key")
        db.execute("ALTER TABLE documents DROP COLUMN key")
        db.execute("CREATE UNIQUE INDEX documents_path ON documents(path)")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")


def _make_old_milvus(store: MilvusStore) -> None:
    """Turn an index into what the previous release wrote: a docs collection without ``source``, keyed by each
    file's absolute path (its schema spelled out as that release made it)."""
    from pymilvus import DataType

    c, name = store._client, store._docs_name
    rows = [r for page in store._query_all(name, "doc_id > 0", store._doc_fields, "test") for r in page]
    c.drop_collection(name)
    docs = c.create_schema(auto_id=False)
    docs.add_field("path", DataType.VARCHAR, is_primary=True, max_length=4096)
    for field in ("doc_id", "version", "size", "chunks", "tokens"):
        docs.add_field(field, DataType.INT64)
    docs.add_field("pages", DataType.INT64, nullable=True)
    for field in ("name", "base", "file_name", "recipe"):
        docs.add_field(field, DataType.VARCHAR, max_length=4096)
    for field in ("kind", "sha256", "added_at", "updated_at"):
        docs.add_field(field, DataType.VARCHAR, max_length=128)
    docs.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
    params = c.prepare_index_params()
    params.add_index("placeholder", index_type="AUTOINDEX", metric_type="IP")
    c.create_collection(name, schema=docs, index_params=params, consistency_level="Strong")
    c.insert(name, [{**{k: v for k, v in r.items() if k != "source"}, "path": r["source"],
                     "placeholder": [1.0, 0.0]} for r in rows])
    c.delete(store._meta_name, filter='key == "identity"')


def test_an_index_of_the_previous_release_reingests_without_duplicates(
    tmp_path: Path, embedder: Embedder, store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _folder(tmp_path / "docs", NOTES)
    (tmp_path / "link").symlink_to(docs)
    index = tmp_path / "index"
    store = store_factory(index, embed_model=embedder.name, dim=embedder.dim)
    Ingestor(store, embedder=embedder).ingest([docs])
    # The old release indexed the folder a second time through the link: written here under another host's keys,
    # which become plain paths (the link's) like every other row when the index is made old.
    monkeypatch.setenv("RAG_HOST_ID", "elsewhere")
    get_settings.cache_clear()
    Ingestor(store, embedder=embedder).ingest([tmp_path / "link"])
    monkeypatch.delenv("RAG_HOST_ID")
    get_settings.cache_clear()
    assert len(store.documents()) == 4
    if isinstance(store, Store):
        store.close()
        _make_old_embedded(index)
    else:
        _make_old_milvus(store)
    old = store_factory(index, embed_model=embedder.name, dim=embedder.dim)
    assert len(old.documents()) == 2, "read as this host's files: the link's copies are the same files"
    assert all(d.key.startswith("file://") and os.path.isabs(d.path) for d in old.documents())
    report = Ingestor(old, embedder=embedder).ingest([docs])
    assert report.added == report.updated == [] and sorted(report.unchanged) == ["bees.txt", "trains.txt"]
    assert [d.name for d in old.documents()] == ["bees.txt", "trains.txt"]
    assert len(chunk_ids(old)) == 2, "the duplicates' chunks are gone (or retired, invisible)"
    store_factory.assert_consistent(old)
    if isinstance(old, MilvusStore):  # the old collection, without the local path field, now holds keyed rows only
        rows = [r for page in old._query_all(old._docs_name, "doc_id > 0", ["path"], "test") for r in page]
        assert not old._sourced and old._meta("identity") == "keyed" and all("://" in r["path"] for r in rows)
        assert len(rows) == 2
    else:
        assert old._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "3"
    removed, failed = Ingestor(old, embedder=embedder).remove([str(docs / "bees.txt")])
    assert removed and not failed and [d.name for d in old.documents()] == ["trains.txt"]


def test_the_same_bytes_uploaded_twice_in_one_go_are_one_document_and_one_file(tmp_path: Path, store) -> None:
    from rag.service.library import Library, Upload
    from rag.settings import Settings

    library = Library(store, settings=Settings(index_dir=store.dir))
    text = b"Alpha text about apples and the orchard by the river."
    report = library.add([Upload("a.txt", text), Upload("copy.txt", text)])
    assert report.added == ["a.txt"] and report.unchanged == ["copy.txt"] and not report.failed
    assert [(n.path, n.note) for n in report.notes] == [("copy.txt", "same content as a.txt: indexed once")]
    assert [d.name for d in library.documents()] == ["a.txt"]
    assert sorted(p.name for p in library.folder.iterdir()) == ["a.txt"], "the copy that is no document is not kept"
