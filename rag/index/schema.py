"""The store's tables, and the upgrade of an index written by an earlier release.

Schema 3 (this release): documents are identified by ``key`` (unique), the identity of their file on every machine
(``rag.index.identity``), keep in ``path`` the local path the last writer read the file from, and are shown under
``name``, a short label unique in the index (``rag.index.labels``); chunks carry text, vector and stems
(``tokens``); ``keyword`` is the FTS5 index of those stems (``rag.index.keyword``); ``tombstones`` lists chunk ids deleted since the last dense
snapshot (``rag.index.dense``). Meta keeps the embedding model, the generation, the chunk count and the snapshot.

Schema 2 identified documents by their file's absolute path on one host. Upgrading gives each row the key of
that path on this host (symlinks resolved, network shares named by their source); rows that turn out to name the
same file (a folder indexed twice through a symlink) keep only the most recently written one. One transaction.

Schema 1 named documents by bare file name and kept a FAISS file and a bm25s folder per generation beside the
database. Upgrading keeps every row, fills the keyword table from the stored texts, and deletes the old files: it
is one transaction, so a crash during it leaves the schema 1 index as it was, to be upgraded at the next open.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path, PurePosixPath

from rag.index.identity import host_id, key_or_legacy, mount_table

from rag.index.keyword import SCHEMA as KEYWORD_SCHEMA
from rag.index.keyword import TOKENIZER_VERSION, KeywordIndex, tokenize
from rag.index.labels import unique_labels
from rag.index.records import indexed_text

SCHEMA_VERSION = 3

TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    path TEXT,
    key TEXT,
    kind TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    pages INTEGER,
    recipe TEXT NOT NULL,
    added_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    base TEXT
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    page INTEGER,
    section TEXT,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    n_tokens INTEGER NOT NULL,
    text TEXT NOT NULL,
    context TEXT,
    sha256 TEXT NOT NULL,
    embedding BLOB NOT NULL,
    tokens TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE INDEX IF NOT EXISTS chunks_sha ON chunks(sha256);
"""
# Added by schema 2 (created on upgrade too, hence apart from the tables schema 1 already had).
TABLES_2 = """
CREATE UNIQUE INDEX IF NOT EXISTS documents_path ON documents(path);
CREATE TABLE IF NOT EXISTS tombstones (chunk_id INTEGER PRIMARY KEY);
""" + KEYWORD_SCHEMA
# Added by schema 3: the key is the identity; the path is only where the last writer read the file.
TABLES_3 = """
DROP INDEX IF EXISTS documents_path;
CREATE UNIQUE INDEX IF NOT EXISTS documents_key ON documents(key);
"""


def meta(db: sqlite3.Connection) -> dict[str, str]:
    return dict(db.execute("SELECT key, value FROM meta").fetchall())


def needs_work(db: sqlite3.Connection) -> bool:
    """True when the file is new, from an older release, or indexed with another tokenizer."""
    try:
        values = meta(db)
    except sqlite3.OperationalError:  # no meta table yet
        return True
    return (
        not values
        or int(values.get("schema", 0)) < SCHEMA_VERSION
        or values.get("keyword_tokenizer") != TOKENIZER_VERSION
    )


def prepare(db: sqlite3.Connection, folder: Path, embed_model: str, dim: int) -> None:
    """Create the tables, or upgrade older ones, in one transaction (the caller holds the write lock)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in _statements(TABLES):
            db.execute(statement)
        values = meta(db)
        if not values:
            db.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                [("schema", str(SCHEMA_VERSION)), ("embed_model", embed_model), ("dim", str(dim)),
                 ("generation", "0"), ("chunks", "0"), ("keyword_tokens", "0"),
                 ("keyword_tokenizer", TOKENIZER_VERSION)],
            )
            for statement in _statements(TABLES_2 + TABLES_3):
                db.execute(statement)
        else:
            if int(values.get("schema", 0)) < 2:
                _upgrade_from_1(db)
            if meta(db).get("keyword_tokenizer") != TOKENIZER_VERSION:
                _reindex_keywords(db)
            if int(meta(db).get("schema", 0)) < 3:
                _upgrade_from_2(db)  # after the keyword table is whole: it may delete documents
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    for old in [*folder.glob("dense-*"), *folder.glob("sparse-*")]:  # schema 1's derived files
        shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _upgrade_from_1(db: sqlite3.Connection) -> None:
    """Schema 1 → 2: a label base for every document, its path as its identity, the keyword table filled."""
    db.execute("ALTER TABLE documents ADD COLUMN base TEXT")
    db.execute("ALTER TABLE chunks ADD COLUMN tokens TEXT NOT NULL DEFAULT ''")
    db.execute("UPDATE documents SET base = name, path = COALESCE(path, name)")
    for statement in _statements(TABLES_2):
        db.execute(statement)
    count = db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    db.executemany(
        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
        [("schema", "2"), ("chunks", str(count)), ("keyword_tokenizer", "")],
    )
    db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")


def _upgrade_from_2(db: sqlite3.Connection) -> None:
    """Schema 2 → 3: each document's absolute path becomes its key on this host; two rows with one key (the same
    file indexed under two paths) keep the most recently written; the labels are made again."""
    if "key" not in {row[1] for row in db.execute("PRAGMA table_info(documents)")}:
        db.execute("ALTER TABLE documents ADD COLUMN key TEXT")
    table, host = mount_table(), host_id()
    rows = db.execute("SELECT id, path, name FROM documents ORDER BY updated_at DESC, id DESC").fetchall()
    keys: dict[str, int] = {}
    for doc_id, path, name in rows:
        stored = path or name  # schema 1 kept only a bare file name for some: a key of its own, on this host
        key = key_or_legacy(stored, table=table, host=host) if os.path.isabs(stored) else f"file://{host}/{stored}"
        if key in keys:
            delete_document(db, doc_id)  # an older copy of the same file
            continue
        keys[key] = doc_id
        db.execute("UPDATE documents SET key = ? WHERE id = ?", (key, doc_id))
    for statement in _statements(TABLES_3):
        db.execute(statement)
    for file_name in {PurePosixPath(b or "").name for (b,) in db.execute("SELECT DISTINCT base FROM documents")}:
        relabel(db, file_name)
    db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', '3')")
    db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")


def count(db: sqlite3.Connection, chunks: int, tokens: int) -> None:
    """Keep the chunk and keyword-token totals (BM25's collection statistics) in step with the rows."""
    db.executemany(
        "UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = ?",
        [(chunks, "chunks"), (tokens, "keyword_tokens")],
    )


def delete_document(db: sqlite3.Connection, doc_id: int) -> None:
    """Delete a document's rows, their postings, and record their ids as tombstones for the dense snapshot (inside
    the caller's transaction)."""
    tokens = KeywordIndex(db).remove_document(doc_id)
    ids = db.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,)).fetchall()
    db.executemany("INSERT OR IGNORE INTO tombstones(chunk_id) VALUES (?)", ids)
    db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
    db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
    count(db, -len(ids), -tokens)


def relabel(db: sqlite3.Connection, file_name: str) -> dict[str, str]:
    """Give the documents whose labels end in ``file_name`` short labels that differ (``unique_labels`` over their
    keys, so two hosts' same paths differ by the host); returns {key: label}."""
    pattern = "%/" + file_name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = db.execute(
        "SELECT id, key, base, name FROM documents WHERE base = ? OR base LIKE ? ESCAPE '\\'", (file_name, pattern)
    ).fetchall()
    labels = unique_labels({key: base for _, key, base, _ in rows})
    changed = [(doc_id, labels[key]) for doc_id, key, _, name in rows if labels[key] != name]
    # in two steps, so that two documents can swap labels without clashing on the unique column
    db.executemany("UPDATE documents SET name = ? WHERE id = ?", ((f"\0{i}", i) for i, _ in changed))
    db.executemany("UPDATE documents SET name = ? WHERE id = ?", ((n, i) for i, n in changed))
    return labels


def _reindex_keywords(db: sqlite3.Connection) -> None:
    """Stem every stored chunk again and rebuild the keyword table (after an upgrade, or a new ``tokenize``)."""
    last = tokens = 0
    while True:
        rows = db.execute(
            "SELECT id, text, context FROM chunks WHERE id > ? ORDER BY id LIMIT 5000", (last,)
        ).fetchall()
        if not rows:
            break
        stems = [(i, tokenize(indexed_text(text, context))) for i, text, context in rows]
        db.executemany("UPDATE chunks SET tokens = ? WHERE id = ?", ((" ".join(t), i) for i, t in stems))
        tokens += sum(len(t) for _, t in stems)
        last = rows[-1][0]
    KeywordIndex(db).rebuild()
    db.executemany(
        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
        [("keyword_tokenizer", TOKENIZER_VERSION), ("keyword_tokens", str(tokens))],
    )
    db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")


def has_index(index_dir: Path) -> bool:
    """Whether ``index_dir`` holds an index (its database file), without creating anything."""
    return (Path(index_dir) / "index.sqlite").is_file()


def recorded_embed_model(index_dir: Path) -> str | None:
    """The embedding model an existing index was built with, or None (no index there yet, or unreadable)."""
    path = Path(index_dir) / "index.sqlite"
    if not path.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'embed_model'").fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None
