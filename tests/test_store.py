"""The store at small sizes: incremental writes give the results of a rebuild, readers see one generation,
same-named files stay apart, a schema 1 index upgrades, and concurrent writers and readers lose nothing.

The contract of ``rag.index.base.Index`` runs against every backend through the ``store_factory`` fixture (and the
``store`` fixture built on it); the tests of the embedded store's own parts (its IVF snapshot, its upgrade from the
previous release's files, its file lock across processes) open ``Store`` itself."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import Ingestor
from ingest.report import Progress
from rag.index.base import Index
from rag.index.embedder import Embedder
from rag.index.keyword import tokenize
from rag.index.records import NewChunk, sha256_text
from rag.index.store import DensePolicy, Store
from tests.conftest import ROOT
from tests.stores import StoreFactory, keyword_index_matches_the_rows

DIM = 32
WORDS = ("amber basalt cedar delta ember fjord garnet harbor indigo juniper kestrel lagoon marble nectar onyx prairie"
         " quartz raven sierra tundra umber violet walnut xenon yarrow zephyr").split()


def _chunks(rng: np.random.Generator, tag: str) -> list[NewChunk]:
    out = []
    for n in range(int(rng.integers(1, 6))):
        text = f"{tag} " + " ".join(rng.choice(WORDS, size=int(rng.integers(5, 30))))
        vector = rng.normal(size=DIM).astype(np.float32)
        out.append(NewChunk(text, None, None, 0, len(text), 9, None, sha256_text(text), vector / np.linalg.norm(vector)))
    return out


def _put(store: Index, name: str, chunks: list[NewChunk]) -> None:
    store.put_document(path=f"/docs/{name}", base=name, kind="txt", sha256=name, size=1, pages=None, recipe="r",
                       chunks=chunks)


def _results(store: Index, rng: np.random.Generator) -> list:
    """What 20 dense and 20 keyword queries return, as (label, chunk text, score): ids differ between stores, so
    equal scores are put in text order."""
    out = []
    for _ in range(20):
        vector = rng.normal(size=DIM).astype(np.float32)
        for hits in (store.search_dense(vector / np.linalg.norm(vector), 8),
                     store.search_sparse(" ".join(rng.choice(WORDS, size=3)), 8)):
            chunks = {c.id: c for c in store.chunks([i for i, _ in hits])}
            out.append(sorted(((chunks[i].source, chunks[i].text, round(s, 4)) for i, s in hits),
                              key=lambda hit: (-hit[2], hit[0], hit[1])))
    return out


def test_every_member_of_the_interface_is_on_the_embedded_store_with_its_signature() -> None:
    """``Store`` satisfies ``Index`` member by member: same parameters, kinds, defaults and parameter types (the
    return types differ only in naming ``Store`` for ``Index``)."""
    members = [name for name, value in vars(Index).items() if callable(value) and not name.startswith("_")]
    assert {"reading", "writer", "put_document", "remove_document", "search_dense", "search_sparse", "idf",
            "chunks", "documents", "document_at"} <= set(members)
    for name in members:
        wanted, found = inspect.signature(getattr(Index, name)), inspect.signature(getattr(Store, name))
        shape = [(p.name, p.kind, p.default, p.annotation) for p in wanted.parameters.values()]
        assert shape == [(p.name, p.kind, p.default, p.annotation) for p in found.parameters.values()], name
    assert set(Index.__annotations__) == {"dir", "embed_model", "dim"}


def test_each_backend_is_an_index(tmp_path: Path, store_factory: StoreFactory) -> None:
    store = store_factory(tmp_path / "index", embed_model="t", dim=DIM)
    assert isinstance(store, Index)
    assert (store.embed_model, store.dim) == ("t", DIM)
    with store.writer() as writing:
        assert isinstance(writing, Index)


def test_incremental_writes_give_the_results_of_a_rebuild(tmp_path: Path, store_factory: StoreFactory) -> None:
    """Random puts, replacements and removals, with the writes folded into the search structures many times along
    the way, leave an index that answers exactly as one built from scratch with the final documents."""
    rng = np.random.default_rng(11)
    incremental = store_factory(tmp_path / "incremental", embed_model="t", dim=DIM, merge_often=True)
    final: dict[str, list[NewChunk]] = {}
    for step in range(150):
        name = f"doc{int(rng.integers(0, 25))}.txt"
        with incremental.writer():
            if name in final and rng.random() < 0.3:
                assert incremental.remove_document(name)
                del final[name]
            else:
                final[name] = _chunks(rng, f"step{step}")
                _put(incremental, name, final[name])
    rebuilt = store_factory(tmp_path / "rebuilt", embed_model="t", dim=DIM, merge_often=True)
    with rebuilt.writer():
        for name, chunks in sorted(final.items()):
            _put(rebuilt, name, chunks)
    store_factory.assert_consistent(incremental)
    assert _results(incremental, np.random.default_rng(5)) == _results(rebuilt, np.random.default_rng(5))
    terms = tokenize(" ".join([*WORDS, *(f"step{n}" for n in range(150))]))
    assert incremental.idf(terms) == rebuilt.idf(terms) and incremental.chunk_count() == rebuilt.chunk_count()
    assert [d.name for d in incremental.documents()] == sorted(final)
    if isinstance(incremental, Store):  # the embedded store's own parts: snapshots merged, the same term table
        assert list(tmp_path.joinpath("incremental").glob("vectors-*.faiss")), "the delta was merged into snapshots"
        table = "SELECT term, chunks FROM keyword_terms ORDER BY term"
        assert isinstance(rebuilt, Store)
        assert incremental._db.execute(table).fetchall() == rebuilt._db.execute(table).fetchall()


def test_the_keyword_check_finds_a_posting_left_behind(tmp_path: Path) -> None:
    """The check the tests rely on can fail: a chunk row deleted behind FTS5's back leaves its postings stale."""
    store = Store(tmp_path, embed_model="t", dim=DIM)
    with store.writer():
        _put(store, "a.txt", _chunks(np.random.default_rng(1), "alpha"))
    assert keyword_index_matches_the_rows(store._db)
    store._db.execute("DELETE FROM chunks WHERE id = (SELECT MIN(id) FROM chunks)")
    assert not keyword_index_matches_the_rows(store._db)
    store.close()


def test_ivf_snapshot_finds_what_exact_search_finds_and_never_a_removed_id(tmp_path: Path) -> None:
    """The embedded store's approximate (IVF) snapshot, once the index outgrows exact search."""
    rng = np.random.default_rng(3)
    store = Store(tmp_path, embed_model="t", dim=DIM, policy=DensePolicy(exact_limit=150, merge_rows=40, min_nprobe=64))
    names = [f"doc{i}.txt" for i in range(120)]
    with store.writer():
        for name in names:
            _put(store, name, _chunks(rng, name))
    removed = set()
    with store.writer():
        for name in names[::3]:
            removed |= {r[0] for r in store._db.execute(
                "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE d.name = ?", (name,))}
            store.remove_document(name)
    rows = store._db.execute("SELECT id, embedding FROM chunks").fetchall()
    ids = np.array([r[0] for r in rows])
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, DIM)
    assert store.dense_ids() == set(ids.tolist())
    recalls = []
    for _ in range(30):
        query = rng.normal(size=DIM).astype(np.float32)
        query /= np.linalg.norm(query)
        found = [i for i, _ in store.search_dense(query, 10)]
        assert not removed & set(found)
        recalls.append(len(set(found) & set(ids[np.argsort(-(matrix @ query))[:10]].tolist())) / 10)
    assert store._dense._snapshot is not None and store._dense._snapshot.__class__.__name__.startswith("IndexIVF")
    assert np.mean(recalls) >= 0.9, np.mean(recalls)


def test_a_query_during_a_write_never_leaves_a_stale_keyword_index(
    tmp_path: Path, store: Index, embedder: Embedder, store_factory: StoreFactory
) -> None:
    """Issue 11, finding 3: a query while the writer held the lock loaded the previous generation's BM25 (same
    number of rows), and the writer then saved it as the new one: deleted chunks stayed findable, even after a
    restart."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bees.txt").write_text("Honey bees communicate the direction of flowers with a waggle dance.\n")
    (docs / "trains.txt").write_text("The Glacier Express crosses 291 bridges between Zermatt and St. Moritz.\n")
    Ingestor(store, embedder=embedder).ingest([docs])
    (docs / "bees.txt").write_text("Bumblebees nest underground in abandoned burrows of field mice.\n")  # one chunk

    def query_midway(event: Progress) -> None:
        if event.stage == "done":
            store.search_sparse("waggle dance", 3)

    Ingestor(store, embedder=embedder, on_progress=query_midway).ingest([docs])
    assert store.search_sparse("waggle dance", 3) == []
    reopened = store_factory(store.dir, embed_model=embedder.name, dim=embedder.dim)
    assert reopened.search_sparse("waggle dance", 3) == []
    assert reopened.chunks([i for i, _ in reopened.search_sparse("bumblebees burrows", 3)])[0].source == "bees.txt"
    reopened.close()


def test_same_named_files_in_two_folders_are_two_documents(tmp_path: Path, store: Index, embedder: Embedder) -> None:
    """Issue 11, finding 2: ingesting b/notes.md after a/notes.md replaced a's document."""
    for folder, text in (("a", "The alpine hut sleeps twelve climbers."), ("b", "The harbour crane lifts forty tons.")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "notes.md").write_text(text)
    (tmp_path / "b" / "sub").mkdir()
    (tmp_path / "b" / "sub" / "readme.md").write_text("Nested files keep their folder in the label.")
    ingestor = Ingestor(store, embedder=embedder)
    assert ingestor.ingest([tmp_path / "a"]).added == ["notes.md"]
    report = ingestor.ingest([tmp_path / "b"])
    assert sorted(report.added) == ["b/notes.md", "sub/readme.md"] and report.updated == []
    assert [d.name for d in store.documents()] == ["a/notes.md", "b/notes.md", "sub/readme.md"]
    from rag.retrieval.retriever import Retriever

    retriever = Retriever(store, embedder=embedder)
    assert retriever.search("How many climbers sleep in the hut?", 1)[0].chunk.source == "a/notes.md"
    assert retriever.search("What can the crane lift?", 1)[0].chunk.source == "b/notes.md"
    again = ingestor.ingest([tmp_path / "a", tmp_path / "b"])
    assert sorted(again.unchanged) == ["a/notes.md", "b/notes.md", "sub/readme.md"] and again.chunks == 0

    removed, failed = ingestor.remove(["a/notes.md"])
    assert removed == ["a/notes.md"] and not failed
    assert [d.name for d in store.documents()] == ["notes.md", "sub/readme.md"], "the label shrinks back"
    (tmp_path / "b" / "notes.md").unlink()
    assert ingestor.ingest([tmp_path / "b"]).removed == ["notes.md"]


def test_an_index_from_the_previous_release_upgrades_without_losing_a_document(tmp_path: Path) -> None:
    """The previous release's vectors are float32 MiniLM's, which the ONNX float32 backend makes too (the int8
    default is another model to the index, and is refused by it: test_ingest_batching checks that)."""
    from rag.index.embedder import OnnxEmbedder

    embedder = OnnxEmbedder(int8=False)
    index = tmp_path / "index"
    shutil.copytree(ROOT / "tests" / "data" / "index-v1", index)
    store = Store(index, embed_model=embedder.name, dim=embedder.dim)
    assert [d.name for d in store.documents()] == ["bees.txt", "lighthouse.md", "trains.txt"]
    assert store.chunk_count() == 4 and not list(index.glob("sparse-*")) and not list(index.glob("dense-*"))
    for query, source in (("waggle dance", "bees.txt"), ("lighthouse cats", "lighthouse.md"),
                          ("Glacier Express bridges", "trains.txt")):
        hits = store.search_sparse(query, 1)
        assert store.chunks([hits[0][0]])[0].source == source
        dense = store.search_dense(embedder.embed_query(query), 1)
        assert store.chunks([dense[0][0]])[0].source == source
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bees.txt").write_text("Solitary bees nest alone in hollow stems.")
    report = Ingestor(store, embedder=embedder).ingest([docs])
    assert len(report.added) == 1 and report.updated == [], "a new file of the same name is a new document"
    labels = [d.name for d in store.documents() if d.name.endswith("bees.txt")]
    assert sorted(labels) == sorted([report.added[0], "v1fix/docs/bees.txt"])  # both in a docs/ folder: one more
    assert len(store.documents()) == 4
    store.close()


def test_three_writers_and_a_reader_at_once(tmp_path: Path) -> None:
    """Three writer processes and a reading process on one index: the reader never gets a deleted id nor half a
    document, writers fail only with "busy", and the index ends holding exactly what the writers committed last."""
    index = tmp_path / "index"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start(role: str, seed: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "tests.store_worker", role, str(index), str(seed), "20"],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    from tests.store_worker import open_store

    open_store(index).close()
    processes = [start("writer", seed) for seed in (1, 2, 3)] + [start("reader", 9)]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    assert json.loads(outputs[3][0])["reads"] > 20
    expected: dict[str, int | None] = {}
    for seed in (1, 2, 3):
        for line in (tmp_path / f"writer-{seed}.log").read_text().splitlines():
            change = json.loads(line)
            expected[change["path"]] = change["version"]
    store = open_store(index)
    stored = {d.path: int(d.sha256.split()[0][1:]) for d in store.documents()}
    assert stored == {path: v for path, v in expected.items() if v is not None}
    assert store.dense_ids() == {r[0] for r in store._db.execute("SELECT id FROM chunks")}
    assert keyword_index_matches_the_rows(store._db)
    store.close()


@pytest.mark.parametrize("extra", [0, 1, 2])
def test_unique_labels(extra: int) -> None:
    from rag.index.labels import unique_labels

    docs = {"/x/a/notes.md": "notes.md", "/x/b/notes.md": "notes.md", "/y/report.pdf": "report.pdf",
            "/z/q/a/notes.md": "notes.md"}
    docs.update({f"/extra{i}/README.md": "README.md" for i in range(extra)})
    labels = unique_labels(docs)
    assert len(set(labels.values())) == len(labels)
    assert labels["/y/report.pdf"] == "report.pdf" and labels["/x/b/notes.md"] == "b/notes.md"
    assert labels["/x/a/notes.md"] == "x/a/notes.md" and labels["/z/q/a/notes.md"] == "q/a/notes.md"
    if extra == 1:
        assert labels["/extra0/README.md"] == "README.md"


def test_an_old_index_opens_with_the_default_settings_and_keeps_its_vectors(tmp_path: Path, run_cli) -> None:
    """The previous release wrote float32 vectors; with no embedding backend configured, the commands read and
    extend such an index with float32 vectors instead of refusing it for the int8 default."""
    index = tmp_path / "index"
    shutil.copytree(ROOT / "tests" / "data" / "index-v1", index)
    found = run_cli("rag.search", "waggle dance", "-k", "1", "--index", str(index), "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["source"] == "bees.txt"
    (tmp_path / "new.md").write_text("# Owls\n\nBarn owls hunt by sound alone.\n")
    added = run_cli("ingest", str(tmp_path / "new.md"), "--index", str(index), "--json")
    assert added.returncode == 0 and json.loads(added.stdout)["added"] == 1, added.stderr
    assert json.loads(run_cli("rag.search", "owls hunting by sound", "-k", "1", "--index", str(index),
                              "--json").stdout)[0]["source"] == "new.md"
