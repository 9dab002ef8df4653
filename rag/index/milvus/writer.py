"""Writing to the Milvus index: documents swapped whole by versions, and the writer's lease.

Why it is safe without transactions (Milvus has none across rows):
- A document is swapped whole by versions. A write inserts the new chunks under a fresh version, then upserts the
  document's one row to name that version (a single-row upsert is atomic), then retires the old version.
  Readers keep only chunks whose (doc_id, version) is the current one in their snapshot of the docs rows
  (``reading()``), so before the upsert they see the old version whole and after it the new one whole; never half.
  A retired version's chunks are deleted by a writer ``RETIRE_SECONDS`` later, so a read that took its snapshot
  before the switch still finds every chunk of the version it sees.
- A writer killed midway leaves chunks of a version no row names: invisible, and deleted by the next writer, which
  finds them through the "pending" record the dead writer left in meta.
- Keyword scores are Lucene's BM25 as in the embedded store: Milvus's BM25 search picks the candidates, which are
  then scored with ``rag.index.keyword.bm25`` on their stems, with document frequencies counted from Milvus's
  inverted index (a BM25 search per term lists the chunks holding it; cached per generation) and the chunk and
  token totals of the snapshot. So fusion
  and the evidence gate (``idf``) get the same numbers from either store.
- The writer lock is a lease row in meta (owner, expiry), taken by writing it and reading it back after a pause,
  renewed while held. Milvus offers no compare-and-swap, so two writers racing for a free lease in the same few
  milliseconds could both win; that can cost nothing worse than last-writer-wins on one document (random 52-bit
  ids never collide, and each writer deletes only the version it replaced). A Milvus cluster runs etcd: a
  deployment that wants a strict lock takes it there (see docs/milvus.md).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.index.identity import document_key, is_key
from rag.index.keyword import tokenize
from rag.index.milvus import keys
from rag.index.milvus.common import _quote
from rag.index.records import NewChunk, StoreError, Stored, indexed_text

if TYPE_CHECKING:
    from rag.index.milvus.store import MilvusStore

_LEASE_SECONDS = 30.0  # a writer's lease lasts this long unless renewed (every third of it)
_SETTLE_SECONDS = 0.05  # between writing the lease and reading it back: a racing writer's write lands in between
_INSERT_ROWS = 500  # chunks per insert request
# A replaced or removed version's chunks stay this long (invisible to new reads) before a writer deletes them, so
# that a read which began before the switch still finds the version it is reading whole.
RETIRE_SECONDS = 120.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _new_id() -> int:
    """A random positive id below 2**52 (exact in JSON numbers): writers on any machine need no shared counter."""
    return secrets.randbits(52) | 1


class MilvusWriter:
    """The writing half of ``MilvusStore`` (which it is mixed into): the lease, versioned swaps, removal."""

    _local_writer = threading.Lock()  # replaced per store in MilvusStore.__init__
    _writer_thread: int | None = None

    # provided by MilvusStore: the connection, its collections and the reading half
    _call: Any
    _query: Any
    _meta: Any
    _set_meta: Any
    _owner: str

    def _lease(self) -> dict[str, Any] | None:
        value = self._meta("writer")
        return json.loads(value) if value else None

    @staticmethod
    def _holder_alive(lease: dict[str, Any]) -> bool:
        """False when the lease's holder was a process of this host that is gone (killed writers free it at once;
        a holder on another host keeps it until it expires)."""
        if lease.get("host") != os.uname().nodename:
            return True
        try:
            os.kill(int(lease["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _try_lease(self) -> bool:
        lease = self._lease()
        if lease and lease["owner"] != self._owner and lease["expires"] > time.time() and self._holder_alive(lease):
            return False
        self._set_meta("writer", json.dumps({"owner": self._owner, "expires": time.time() + _LEASE_SECONDS,
                                             "host": os.uname().nodename, "pid": os.getpid()}))
        time.sleep(_SETTLE_SECONDS)  # a writer that read the lease free at the same moment has written by now
        lease = self._lease()
        return bool(lease and lease["owner"] == self._owner)

    def _renew(self) -> None:
        while not self._renewing.wait(_LEASE_SECONDS / 3):
            try:
                self._set_meta("writer", json.dumps({"owner": self._owner, "expires": time.time() + _LEASE_SECONDS,
                                                     "host": os.uname().nodename, "pid": os.getpid()}))
            except StoreError:
                pass  # the server is away: the write in progress fails on its own

    def _stop_renewing(self) -> None:
        if self._renewer is not None:
            self._renewing.set()
            self._renewer.join()
            self._renewer = None

    @contextmanager
    def writer(self, timeout: float = 600) -> Iterator[MilvusStore]:
        """Hold the index's writer lease (``StoreError`` when another writer keeps it longer than ``timeout``).
        Re-entrant in the thread that holds it; another thread of this process waits for it, as another process
        does (the page shares one store between its sessions)."""
        if self._writing and self._writer_thread == threading.get_ident():
            self._writing += 1
            try:
                yield self
            finally:
                self._writing -= 1
            return
        deadline = time.monotonic() + timeout
        if not self._local_writer.acquire(timeout=max(timeout, 0.0)):
            raise StoreError(f"the index {self.prefix} on the Milvus server at {self.uri} is busy: another session "
                             f"of this process is writing to it; try again when it is done (waited {timeout:g} s)")
        try:
            yield from self._leased(deadline, timeout)
        finally:
            self._local_writer.release()

    def _leased(self, deadline: float, timeout: float) -> Iterator[MilvusStore]:
        while not self._try_lease():
            if time.monotonic() >= deadline:
                holder = self._lease() or {}
                raise StoreError(
                    f"the index {self.prefix} on the Milvus server at {self.uri} is busy:"
                    " another process is writing to it"
                    f" ({holder.get('host')}, pid {holder.get('pid')}); try again when it is done"
                    f" (waited {timeout:g} s)"
                )
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        self._renewing.clear()
        self._renewer = threading.Thread(target=self._renew, name="milvus-lease", daemon=True)
        self._renewer.start()
        self._writing, self._writer_thread = 1, threading.get_ident()
        try:
            self._finish_interrupted_writes()
            keys.upgrade(self)  # an index of the previous release: its rows keyed by plain paths
            self._sweep_retired()
            yield self  # type: ignore[misc]
        finally:
            self._writing, self._writer_thread = 0, None
            self._stop_renewing()
            try:
                if (self._lease() or {}).get("owner") == self._owner:
                    self._call("releasing the writer lease", self._client.delete, self._meta_name,
                               filter='key == "writer"', timeout=self._timeout)
            except StoreError:
                pass  # the lease runs out by itself

    def _require_writer(self) -> None:
        if not self._writing:
            raise StoreError("writes need `with store.writer():`")

    def _finish_interrupted_writes(self) -> None:
        """Delete the chunks of versions a killed writer left behind (recorded as pending before it wrote them)."""
        pending = self._query(self._meta_name, 'key like "pending:%"', ["key", "value"], "reading the index's state")
        if not pending:
            return
        current = {row["doc_id"]: row["version"] for row in self._take_snapshot().rows.values()}
        for row in pending:
            work = json.loads(row["value"])
            if work["new"] is not None and current.get(work["doc_id"]) != work["new"]:
                self._delete_chunks(work["doc_id"], work["new"])  # never named: never seen
            if work["old"] is not None and current.get(work["doc_id"]) != work["old"]:
                self._retire(work["doc_id"], work["old"])  # seen until the switch: a read may still hold it
            self._call("writing the index's state", self._client.delete, self._meta_name,
                       filter=f"key == {_quote(row['key'])}", timeout=self._timeout)
        self._bump()

    def _retire(self, doc_id: int, version: int) -> None:
        self._set_meta(f"retired:{doc_id}:{version}", json.dumps({"doc_id": doc_id, "version": version,
                                                                  "at": time.time()}))

    def retired_versions(self) -> set[int]:
        """The versions replaced or removed but not yet deleted (their chunks are invisible to new reads)."""
        rows = self._query(self._meta_name, 'key like "retired:%"', ["value"], "reading the index's state")
        return {json.loads(r["value"])["version"] for r in rows}

    def _sweep_retired(self) -> None:
        """Delete the chunks of versions retired more than ``RETIRE_SECONDS`` ago."""
        rows = self._query(self._meta_name, 'key like "retired:%"', ["key", "value"], "reading the index's state")
        for row in rows:
            work = json.loads(row["value"])
            if work["at"] <= time.time() - RETIRE_SECONDS:
                self._delete_chunks(work["doc_id"], work["version"])
                self._call("writing the index's state", self._client.delete, self._meta_name,
                           filter=f"key == {_quote(row['key'])}", timeout=self._timeout)

    def _delete_chunks(self, doc_id: int, version: int) -> None:
        self._call("deleting chunks", self._client.delete, self._chunks_name,
                   filter=f"doc_id == {int(doc_id)} and version == {int(version)}", timeout=self._timeout)

    def _bump(self) -> None:
        self._set_meta("generation", str(self._generation() + 1))

    def _relabelled(self, file_name: str, key: str, row: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The docs rows (as written) whose labels change when ``row`` (for ``key``; None: removed) joins the
        documents with the same file name, ``row`` first (with its label) when given."""
        same = keys.by_key(self._query(self._docs_name, f"file_name == {_quote(file_name)}", self._doc_fields,
                                       "reading the documents"))
        same.pop(key, None)
        changed = keys.relabel([*same.values(), *([row] if row is not None else [])])
        first = [r for r in changed if row is not None and r["key"] == key] or ([row] if row is not None else [])
        return [keys.docs_row(r, self._sourced) for r in first + [r for r in changed if r["key"] != key]]

    def put_document(
        self,
        *,
        path: str | Path,
        base: str,
        kind: str,
        sha256: str,
        size: int,
        pages: int | None,
        recipe: str,
        chunks: Sequence[NewChunk],
    ) -> Stored:
        """Store the document read from ``path`` and its chunks, replacing an earlier version of the same file:
        the new version's chunks first, then the document's row names it, then the old version's chunks go."""
        self._require_writer()
        key, path = document_key(path), os.path.abspath(path)
        old = self._query(self._docs_name, f"path == {_quote(key)}", self._doc_fields, "reading the documents")
        previous = old[0] if old else None
        doc_id = previous["doc_id"] if previous else _new_id()
        version = _new_id()
        pending = f"pending:{doc_id}:{version}"
        self._set_meta(pending, json.dumps({"doc_id": doc_id, "new": version,
                                            "old": previous["version"] if previous else None}))
        stems = [tokenize(indexed_text(c.text, c.context)) for c in chunks]
        rows = [
            {"id": _new_id(), "doc_id": doc_id, "version": version,
             "vector": np.asarray(c.vector, dtype=np.float32).tolist(), "stems": " ".join(words), "text": c.text,
             "context": c.context, "section": c.section, "page": c.page, "start": c.start, "end": c.end,
             "ordinal": ordinal, "n_tokens": c.n_tokens, "sha256": c.sha256}
            for ordinal, (c, words) in enumerate(zip(chunks, stems, strict=True))
        ]
        for start in range(0, len(rows), _INSERT_ROWS):
            self._call("writing chunks", self._client.insert, self._chunks_name, rows[start : start + _INSERT_ROWS],
                       timeout=self._timeout)
        now = _now()
        row = {"key": key, "source": path, "doc_id": doc_id, "version": version, "name": base, "base": base,
               "file_name": PurePosixPath(base).name, "kind": kind, "sha256": sha256, "size": size, "pages": pages,
               "recipe": recipe, "added_at": previous["added_at"] if previous else now, "updated_at": now,
               "chunks": len(rows), "tokens": sum(len(words) for words in stems)}
        changed = self._relabelled(row["file_name"], key, row)
        # the switch: one upsert names the new version (and gives the labels it changes)
        self._call("writing the document", self._client.upsert, self._docs_name, changed, timeout=self._timeout)
        if previous:
            self._retire(doc_id, previous["version"])
        self._call("writing the index's state", self._client.delete, self._meta_name,
                   filter=f"key == {_quote(pending)}", timeout=self._timeout)
        self._bump()
        return Stored(changed[0]["name"], previous is not None)

    def remove_document(self, name: str) -> bool:
        """Delete a document (by label, key, or the path of its file) with its chunks. False if there is none."""
        self._require_writer()
        key = name if is_key(name) else document_key(name)
        rows = self._query(self._docs_name, f"name == {_quote(name)} or path == {_quote(key)}", self._doc_fields,
                           "reading the documents")
        if not rows:
            return False
        row = sorted(rows, key=lambda r: r["name"] != name)[0]
        pending = f"pending:{row['doc_id']}:{row['version']}"
        self._set_meta(pending, json.dumps({"doc_id": row["doc_id"], "new": None, "old": row["version"]}))
        self._call("deleting the document", self._client.delete, self._docs_name,
                   filter=f"path == {_quote(row['path'])}", timeout=self._timeout)
        changed = self._relabelled(row["file_name"], row["path"], None)
        if changed:
            self._call("relabelling documents", self._client.upsert, self._docs_name, changed, timeout=self._timeout)
        self._retire(row["doc_id"], row["version"])
        self._call("writing the index's state", self._client.delete, self._meta_name,
                   filter=f"key == {_quote(pending)}", timeout=self._timeout)
        self._bump()
        return True

