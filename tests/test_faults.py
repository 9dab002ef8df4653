"""Fault campaign: ``kill -9`` at random points of real ingests (``python -m ingest`` with the real model), and
after each one the index opens, every committed document is whole (rows, vectors and keyword postings agree, and
search finds each document's chunks), and a re-run completes.

Small dense-index settings make the ingests fold the delta into snapshots and train IVF indexes as they go, so
kills also land inside merges. A kill counts only when it ends a running ingest (exit by SIGKILL); one that comes
after the ingest has finished is made again on the next edit. Seeded: the same edits and kill points every run.

Nothing committed is lost: the ingest is stopped (SIGSTOP) just before its kill and the committed state read, and
after the kill the index holds exactly that state (each document's hash and chunk rows, and the generation). Against
the state read before the run, each document is as it was, or its file's current version, or gone only if its file
is; and nothing changes between one kill and the next run.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from rag.index.embedder import Embedder
from rag.index.store import Store
from tests.conftest import ROOT

# Small windows spread the writes over the run (each window's files are stored after it is embedded).
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_DENSE_MERGE_ROWS": "6", "RAG_DENSE_EXACT_LIMIT": "40",
       "RAG_EMBED_WINDOW": "8"}
TOPICS = ("lighthouse", "glacier", "orchard", "foundry", "observatory", "monastery", "vineyard", "shipyard")


def _write(path: Path, rng: random.Random, version: int, history: dict[str, set[str]]) -> None:
    """A file of two paragraphs or more, each of numbered records (the numbers let keyword search find a chunk)."""
    tag = path.stem
    paragraphs = [
        f"{tag} version {version}, part {n}: the {rng.choice(TOPICS)} keeps "
        + " ".join(f"{rng.choice(TOPICS)} record {rng.randint(1, 10**6)}" for _ in range(40))
        for n in range(rng.randint(2, 5))
    ]
    path.write_text("\n\n".join(paragraphs))
    history.setdefault(str(path), set()).add(hashlib.sha256(path.read_bytes()).hexdigest())


# What is committed: per document (by path) its file's hash, its chunk count, and a hash of its chunk rows (ids,
# ordinals, texts, vectors); and the generation, which every committed change bumps.
State = dict[str, tuple[str, int, str]]


def _committed(index: Path) -> tuple[int, State] | None:
    """The committed state, read in one read transaction without opening a Store (a read-only connection: it
    never creates the file nor recovers anything); None while there is no index yet or it cannot be read."""
    path = index / "index.sqlite"
    if not path.exists():
        return None
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1, isolation_level=None)) as db:
            db.execute("BEGIN")
            generation = int(db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
            rows = db.execute("SELECT d.path, d.sha256, c.id, c.ordinal, c.text, c.embedding FROM documents d"
                              " LEFT JOIN chunks c ON c.doc_id = d.id ORDER BY d.path, c.ordinal").fetchall()
            db.execute("COMMIT")
    except (sqlite3.OperationalError, TypeError):
        return None
    chunks: dict[str, tuple[str, list[bytes]]] = {}
    for doc_path, sha, chunk_id, ordinal, text, blob in rows:
        parts = chunks.setdefault(doc_path, (sha, []))[1]
        if chunk_id is not None:
            parts.append(f"{chunk_id}:{ordinal}:{text}".encode() + bytes(blob))
    state = {
        doc_path: (sha, len(parts), hashlib.sha256(b"\0".join(parts)).hexdigest())
        for doc_path, (sha, parts) in chunks.items()
    }
    return generation, state


def _legal(before: State, after: State, on_disk: dict[str, str], what: str) -> None:
    """``after`` is ``before`` moved on by (part of) an ingest of the folder ``on_disk`` describes: each document is
    as it was, or its file's current version (when that is not what it was), or gone (only when its file is gone).
    Nothing committed before is lost or rolled back; nothing is rewritten that was already current."""
    for path in before.keys() | after.keys():
        was, now = before.get(path), after.get(path)
        if now == was:
            continue
        if now is None:
            assert path not in on_disk, f"{what}: {Path(path).name} was committed ({was[0][:8]}) and is lost"
        else:
            assert path in on_disk and now[0] == on_disk[path] and (was is None or was[0] != on_disk[path]), (
                f"{what}: {Path(path).name} was {was[0][:8] if was else 'absent'}, now {now[0][:8]}:{now[2][:8]}"
            )


def _check(index: Path, embedder: Embedder, history: dict[str, set[str]]) -> dict[str, tuple[str, int]]:
    with sqlite3.connect(index / "index.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = Store(index, embed_model=embedder.name, dim=embedder.dim)
    try:
        store._db.execute("INSERT INTO keyword(keyword) VALUES ('integrity-check')")  # postings match the rows
        rows = store._db.execute("SELECT c.id, c.embedding, c.text FROM chunks c JOIN documents d ON d.id = c.doc_id")
        rows = rows.fetchall()
        assert store.dense_ids() == {r[0] for r in rows}, "vectors and rows agree"
        assert store.chunk_count() == len(rows)
        for doc in store.documents():
            assert doc.sha256 in history[doc.path], f"{doc.name} is a version that was written"
            assert doc.chunks >= 2
        listed = {doc.path: (doc.sha256, doc.chunks) for doc in store.documents()}
        for chunk_id, blob, text in rows:  # each chunk is found by its own record numbers and by its vector
            numbers = re.findall(r"record (\d+)", text)[:4]
            assert chunk_id in [i for i, _ in store.search_sparse(" ".join(numbers), 3)], text[:80]
            assert store.search_dense(np.frombuffer(blob, dtype=np.float32), 1)[0][0] == chunk_id
        return listed
    finally:
        store.close()


def _campaign(tmp_path: Path, embedder: Embedder, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    docs, index = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    history: dict[str, set[str]] = {}
    for n in range(10):
        _write(docs / f"file{n:02d}.txt", rng, 0, history)
    landed = attempt = exact = 0
    last: tuple[int, State] = (-1, {})  # the committed state after the last kill
    while landed < kills:  # a kill that comes after the ingest has finished does not count
        assert attempt < 3 * kills, f"only {landed} of {attempt} kills landed while an ingest was running"
        if attempt:  # edits between runs: replacements, a removal, an addition
            for path in rng.sample(sorted(docs.iterdir()), 6):
                _write(path, rng, attempt, history)
            if rng.random() < 0.5:
                rng.choice(sorted(docs.iterdir())).unlink()
            _write(docs / f"file{10 + attempt:02d}.txt", rng, attempt, history)
        attempt += 1
        on_disk = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in docs.iterdir()}
        before = _committed(index) or (-1, {})
        assert before == last, "no document disappears or changes between kills"
        child = subprocess.Popen([sys.executable, "-m", "ingest", str(docs), "--index", str(index)], cwd=ROOT,
                                 env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The kill lands after a random number of committed writes (one per stored file, and merges), plus a random
        # part of a second: inside the embedding of the next window, inside a write, or inside a merge.
        writes, delay = rng.randint(1, 3), rng.uniform(0, 0.4)
        deadline, seen = time.monotonic() + 120, before  # seen: the last committed state read while it runs
        while time.monotonic() < deadline and child.poll() is None and seen[0] - before[0] < writes:
            time.sleep(0.01)
            seen = _committed(index) or seen
        time.sleep(delay)
        # Stopped first, so that what it has committed when the kill comes can be read: SIGKILL then ends it
        # exactly there. (If that read fails, e.g. the first run is stopped while creating the file, the last
        # state read while it ran stands in: then the kill may only move it on as the ingest would.)
        stopped = child.poll() is None
        if stopped:
            child.send_signal(signal.SIGSTOP)
        frozen = _committed(index) if stopped else None
        child.send_signal(signal.SIGKILL)
        child.wait()
        landed += child.returncode == -signal.SIGKILL
        listed = _check(index, embedder, history)
        after = _committed(index)
        assert after is not None, "the index opens"
        assert {p: v[:2] for p, v in after[1].items()} == listed, "the Store lists what is committed"
        _legal(before[1], after[1], on_disk, f"kill {attempt}, since the run began")
        if frozen is not None:  # every write committed before the kill is there, as it was; nothing else is
            exact += 1
            _legal(before[1], frozen[1], on_disk, f"kill {attempt}, before the kill")
            assert after == frozen, f"kill {attempt}: the committed state is the one at the kill"
        else:
            _legal(seen[1], after[1], on_disk, f"kill {attempt}, since the last read")
        last = after
    print(f"fault campaign: {landed} kills landed in {attempt} ingests; {exact} states read at the kill")
    on_disk = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in docs.iterdir()}
    done = subprocess.run([sys.executable, "-m", "ingest", str(docs), "--index", str(index), "--json"], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    _check(index, embedder, history)
    final = _committed(index)
    assert final is not None
    _legal(last[1], final[1], on_disk, "the re-run")
    store = Store(index, embed_model=embedder.name, dim=embedder.dim)
    assert {d.path: d.sha256 for d in store.documents()} == on_disk, "the re-run leaves exactly the files on disk"
    store.close()


def test_kill_9_during_ingest_a_few_times(tmp_path: Path, embedder: Embedder) -> None:
    _campaign(tmp_path, embedder, kills=3, seed=1)


@pytest.mark.slow
def test_kill_9_during_ingest_campaign(tmp_path: Path, embedder: Embedder) -> None:
    _campaign(tmp_path, embedder, kills=20, seed=2)
