"""Dense search that costs the change, not the index: a FAISS snapshot on disk plus a small delta read from SQLite.

- The snapshot (``vectors-<gen>.faiss``) holds the vectors of the chunks with ids up to ``dense_max_id`` as they
  were at generation <gen>. The store's meta table names it, in the same SQLite file as the rows.
- The delta is what changed since: rows with a higher id (chunk ids only grow: AUTOINCREMENT), searched exactly
  (a FAISS Flat index of the delta), and tombstones, ids deleted since (written by the transaction that deletes the rows), which the
  snapshot's search skips through an ID selector. So a write touches SQLite only.
- When delta rows + tombstones pass ``DensePolicy.merge_due`` the writer folds them into a new snapshot: built
  aside from a connection of its own, fsynced, renamed, then named in meta by one transaction that also clears the
  tombstones. A crash before that transaction leaves the old snapshot named and an unused file, deleted next time.
- A reader caches the snapshot and the delta of the generation it last saw; on a newer generation it reads only the
  rows after what it holds, plus the tombstones. It reads inside the store's read transaction: one generation.
- The kind of snapshot follows the size (``DensePolicy``, measured by ``bench/dense_indexes.py``): exact (Flat)
  while small, IVF with 8-bit scalar quantisation once large (a quarter of Flat's memory), trained on a sample of
  the rows and trained again when the index has grown ``retrain_growth`` times since. HNSW was measured too: it
  cannot remove ids, and took longest to build.
"""

from __future__ import annotations

import math
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

# One query searches at a time; FAISS's OpenMP threads would otherwise stay spinning after each search and take
# the CPU from the next query's embedding (measured: p50 21 ms -> 14.5 ms per query on 2 cores).
faiss.omp_set_num_threads(1)

SNAPSHOT_PREFIX = "vectors-"
RERANK = 4  # a quantised snapshot's candidates per hit wanted, scored again with the float32 vectors
_BATCH = 20_000


@dataclass(frozen=True)
class DensePolicy:
    """Which index, and when to fold the delta into a new snapshot (figures behind them: bench/dense_indexes.py)."""

    exact_limit: int = 50_000  # chunks; below this the snapshot is exact (Flat)
    merge_rows: int = 20_000  # delta rows + tombstones that make the writer merge...
    merge_share: float = 0.05  # ...or this share of the snapshot, whichever is larger
    min_nprobe: int = 32  # IVF lists searched per query: at least this many, and a tenth of the lists
    retrain_growth: float = 4.0  # an IVF index is trained again once the rows have grown this many times

    def kind(self, chunks: int) -> str:
        return "flat" if chunks < self.exact_limit else "ivf"

    def nlist(self, chunks: int) -> int:
        """IVF lists: about sqrt(n), so a probed list holds about sqrt(n) vectors."""
        return int(min(max(math.sqrt(chunks), 16), 8192))

    def nprobe(self, nlist: int) -> int:
        """Lists to search: a tenth of them keeps recall@10 >= 0.95 at a million chunks (bench/dense_indexes.py)."""
        return min(nlist, max(self.min_nprobe, nlist // 10))

    def merge_due(self, delta: int, snapshot_rows: int) -> bool:
        return delta > max(self.merge_rows, self.merge_share * snapshot_rows)


@dataclass(frozen=True)
class SnapshotInfo:
    name: str  # file name in the index folder, "" when there is none yet
    max_id: int  # the highest chunk id it covers
    trained: int  # rows when it was (re)built


def read_snapshot_info(db: sqlite3.Connection) -> SnapshotInfo:
    meta = dict(db.execute("SELECT key, value FROM meta WHERE key LIKE 'dense_%'").fetchall())
    return SnapshotInfo(meta.get("dense_snapshot", ""), int(meta.get("dense_max_id", 0)), int(meta.get("dense_trained", 0)))


def snapshot_meta(info: SnapshotInfo) -> list[tuple[str, str]]:
    return [("dense_snapshot", info.name), ("dense_max_id", str(info.max_id)), ("dense_trained", str(info.trained))]


def _vectors(blobs: list[bytes], dim: int) -> np.ndarray:
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)


def _rows_after(db: sqlite3.Connection, after: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rows = db.execute("SELECT id, embedding FROM chunks WHERE id > ? ORDER BY id", (after,)).fetchall()
    return np.array([r[0] for r in rows], dtype=np.int64), _vectors([r[1] for r in rows], dim)


def exact_scores(db: sqlite3.Connection, ids: list[int], query: np.ndarray, dim: int) -> list[tuple[int, float]]:
    """(chunk id, inner product with ``query``) from the stored vectors of ``ids``."""
    if not ids:
        return []
    rows = db.execute(f"SELECT id, embedding FROM chunks WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall()
    scores = _vectors([r[1] for r in rows], dim) @ query
    return [(int(r[0]), float(s)) for r, s in zip(rows, scores, strict=True)]


def _tombstones(db: sqlite3.Connection) -> np.ndarray:
    return np.array([r[0] for r in db.execute("SELECT chunk_id FROM tombstones")], dtype=np.int64)


class DenseIndex:
    """What one process searches: the snapshot named in meta, plus the delta since, for one generation."""

    def __init__(self, folder: Path, dim: int, policy: DensePolicy) -> None:
        self.folder = folder
        self.dim = dim
        self.policy = policy
        self.generation = -1
        self._snapshot: faiss.Index | None = None
        self._info = SnapshotInfo("", 0, 0)
        self._seen_max = 0  # the highest chunk id read into the delta
        self._delta_ids = np.zeros(0, dtype=np.int64)
        self._delta = np.zeros((0, dim), dtype=np.float32)
        self._delta_index = faiss.IndexFlatIP(dim)
        self._skip: faiss.IDSelector | None = None

    # --- reading (the store holds its lock and a read transaction) -------------------------------------------------

    def refresh(self, db: sqlite3.Connection, generation: int) -> None:
        """Bring the cached snapshot and delta to ``generation``, reading only what changed."""
        if generation == self.generation:
            return
        info = read_snapshot_info(db)
        if info.name != self._info.name or self._snapshot is None and info.name:
            self._snapshot = self._load(info.name) if info.name else None
            if info.name and self._snapshot is None:  # missing or damaged: every row becomes delta
                info = SnapshotInfo("", 0, 0)
            self._info = info
            self._seen_max = info.max_id
            self._delta_ids = np.zeros(0, dtype=np.int64)
            self._delta = np.zeros((0, self.dim), dtype=np.float32)
        gone = _tombstones(db)
        keep = ~np.isin(self._delta_ids, gone)
        new_ids, new_vectors = _rows_after(db, self._seen_max, self.dim)
        self._delta_ids = np.concatenate([self._delta_ids[keep], new_ids])
        self._delta = np.vstack([self._delta[keep], new_vectors])
        self._delta_index = faiss.IndexFlatIP(self.dim)  # FAISS, not numpy: one thread, no BLAS threads spinning
        self._delta_index.add(self._delta)
        self._seen_max = max(self._seen_max, int(new_ids[-1]) if len(new_ids) else 0)
        in_snapshot = gone[gone <= self._info.max_id]
        self._skip = faiss.IDSelectorNot(faiss.IDSelectorBatch(in_snapshot)) if len(in_snapshot) else None
        self.generation = generation

    def ids(self) -> set[int]:
        """Every chunk id a search can return (for checks: it must equal the rows)."""
        found = {int(i) for i in self._delta_ids}
        if self._snapshot is not None:
            found |= {int(i) for i in _snapshot_ids(self._snapshot)}
            if self._skip is not None:
                found = {i for i in found if self._skip.is_member(i)}
        return found

    def search(self, vector: np.ndarray, k: int, db: sqlite3.Connection) -> list[tuple[int, float]]:
        """(chunk id, inner product) of the ``k`` nearest vectors. A quantised snapshot's best ``RERANK * k`` are
        scored again with their stored float32 vectors (``db``, the reader's transaction): 8-bit codes alone lost
        two points of recall@10 at a million chunks (bench/dense_indexes.py)."""
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        found: list[tuple[int, float]] = []
        if self._snapshot is not None and self._snapshot.ntotal:
            quantised = isinstance(self._snapshot, faiss.IndexIVFScalarQuantizer)
            params = _params(self._snapshot, self._skip, self.policy)
            fetch = min(RERANK * k if quantised else k, self._snapshot.ntotal)
            scores, ids = self._snapshot.search(query, fetch, params=params)
            hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
            found += exact_scores(db, [i for i, _ in hits], query[0], self.dim) if quantised else hits
        if len(self._delta_ids):
            scores, rows = self._delta_index.search(query, min(k, len(self._delta_ids)))
            found += [(int(self._delta_ids[r]), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0]
        return sorted(found, key=lambda hit: -hit[1])[:k]

    def _load(self, name: str) -> faiss.Index | None:
        try:
            index = faiss.read_index(str(self.folder / name))
        except RuntimeError:
            return None
        return index if index.d == self.dim else None

    # --- merging (the writer, holding the file lock, so the rows stay still) ---------------------------------------

    def merge_due(self, db: sqlite3.Connection) -> bool:
        info = read_snapshot_info(db)
        delta = db.execute("SELECT COUNT(*) FROM chunks WHERE id > ?", (info.max_id,)).fetchone()[0]
        gone = db.execute("SELECT COUNT(*) FROM tombstones").fetchone()[0]
        total = db.execute("SELECT value FROM meta WHERE key = 'chunks'").fetchone()
        snapshot_rows = (int(total[0]) if total else 0) - delta
        return self.policy.merge_due(delta + gone, snapshot_rows)

    def build_snapshot(self, database: Path, generation: int) -> tuple[SnapshotInfo, faiss.Index]:
        """Fold the delta into a new snapshot file (or build one from all rows when the kind of index changes or an
        IVF index has outgrown its training). Returns what meta must say once the file is in place."""
        db = sqlite3.connect(database)
        try:
            db.execute("BEGIN")  # one consistent view of the rows for the whole build
            info = read_snapshot_info(db)
            total, max_id = db.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM chunks").fetchone()
            kind = self.policy.kind(total)
            index = self._load(info.name) if info.name else None
            outgrown = kind == "ivf" and total > self.policy.retrain_growth * max(info.trained, 1)
            if index is None or _kind(index) != kind or outgrown:
                index, trained, after = self._empty(kind, db, total), total, 0
            else:
                gone = _tombstones(db)
                if len(gone):
                    index.remove_ids(faiss.IDSelectorBatch(gone))
                trained, after = info.trained, info.max_id
            for start in range(after, max_id, _BATCH * 4):  # by id ranges, so memory stays one batch
                rows = db.execute(
                    "SELECT id, embedding FROM chunks WHERE id > ? AND id <= ? ORDER BY id",
                    (start, min(start + _BATCH * 4, max_id)),
                ).fetchall()
                if rows:
                    index.add_with_ids(_vectors([r[1] for r in rows], self.dim), np.array([r[0] for r in rows]))
            db.execute("COMMIT")
        finally:
            db.close()
        name = f"{SNAPSHOT_PREFIX}{generation}.faiss"
        _write_atomic(index, self.folder / name)
        return SnapshotInfo(name, int(max_id), int(trained)), index

    def adopt(self, info: SnapshotInfo, index: faiss.Index, generation: int) -> None:
        """Use a snapshot this process just built and committed, instead of reading it back."""
        self._snapshot, self._info, self._seen_max = index, info, info.max_id
        self._delta_ids = np.zeros(0, dtype=np.int64)
        self._delta = np.zeros((0, self.dim), dtype=np.float32)
        self._delta_index = faiss.IndexFlatIP(self.dim)
        self._skip = None
        self.generation = generation

    def _empty(self, kind: str, db: sqlite3.Connection, total: int) -> faiss.Index:
        if kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        nlist = self.policy.nlist(total)
        index = faiss.index_factory(self.dim, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
        ids = np.array([r[0] for r in db.execute("SELECT id FROM chunks")], dtype=np.int64)
        sample = np.sort(np.random.default_rng(0).choice(ids, size=min(len(ids), 40 * nlist), replace=False))
        blobs: list[bytes] = []
        for start in range(0, len(sample), 500):
            part = [int(i) for i in sample[start : start + 500]]
            marks = ",".join("?" * len(part))
            blobs += [r[0] for r in db.execute(f"SELECT embedding FROM chunks WHERE id IN ({marks})", part)]
        index.train(_vectors(blobs, self.dim))
        return index

    def remove_stale_files(self, keep: set[str]) -> None:
        """Delete snapshot files not in ``keep`` (the current one and the one before, which a reader that began
        just before the merge may still be opening), and leftovers of interrupted writes."""
        for path in self.folder.glob(f"{SNAPSHOT_PREFIX}*"):
            if path.name not in keep:
                path.unlink(missing_ok=True)


def _kind(index: faiss.Index) -> str:
    return "ivf" if isinstance(index, faiss.IndexIVF) else "flat"


def _params(index: faiss.Index, skip: faiss.IDSelector | None, policy: DensePolicy) -> faiss.SearchParameters | None:
    if isinstance(index, faiss.IndexIVF):
        nprobe = policy.nprobe(index.nlist)
        return faiss.SearchParametersIVF(sel=skip, nprobe=nprobe) if skip else faiss.SearchParametersIVF(nprobe=nprobe)
    return faiss.SearchParameters(sel=skip) if skip else None


def _snapshot_ids(index: faiss.Index) -> np.ndarray:
    if isinstance(index, faiss.IndexIVF):
        invlists = index.invlists
        parts = [
            faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
            for i in range(index.nlist)
            if invlists.list_size(i)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return faiss.vector_to_array(index.id_map)


def _write_atomic(index: faiss.Index, path: Path) -> None:
    """Write aside, fsync, rename, fsync the folder: the final name only ever holds a whole file."""
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
