"""Files in, chunks and vectors stored: hash → (skip if unchanged) → load → split → embed → store.

Files are read and split one step ahead, in a separate process (``ingest.parse``), while the chunks of the files
before them are embedded; chunks are embedded in windows that span files, in batches of similar length
(``ingest.batching``); then each file is stored in its own transaction. With ``ingest_workers`` or
``ingest_cluster`` set, workers of a Dask cluster read and embed the files instead (``ingest.fanout``), and this
process stores them as they come back. A file that fails is reported with its reason and never stops the others;
what is already stored stays.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.batching import embed_groups
from ingest.loaders import LoadedDocument
from ingest.parse import Parsed, ParseFailure, SplitConfig, failure_reason, parse_in_order
from ingest.report import Failure, IngestReport, Note, Progress, ProgressCallback, Stage
from ingest.split import Chunk
from rag.errors import EmbeddingError, StoreError
from rag.index.base import Index
from rag.index.embedder import Embedder, embedder_for
from rag.index.identity import Mount, document_key, host_id, mount_table
from rag.index.records import NewChunk, indexed_text, sha256_text
from rag.settings import Settings, get_settings

SPLITTER_VERSION = 3  # 2: compound hyphens kept at line breaks, PDF chunks indexed with the title; 3: PDF pages cut
# into their outline's sections, each chunk indexed with its document's title and its section
PARSE_AHEAD_FILES = 8  # files read in advance: enough to fill the next window while this one embeds


def recipe(settings: Settings, embedder: Embedder) -> str:
    """What shaped a document's chunks; a document ingested under another recipe counts as changed."""
    return json.dumps(
        {
            "splitter": SPLITTER_VERSION,
            "chunk_tokens": settings.chunk_tokens,
            "overlap": settings.chunk_overlap,
            "model": embedder.name,
            "heading_context": settings.heading_context,
        },
        sort_keys=True,
    )


def collect_files(paths: Iterable[Path]) -> tuple[dict[Path, str], list[Failure]]:
    """Expand folders (recursively, skipping hidden entries) into files; paths that do not exist are failures.

    Returns each file's absolute path (where it is read from; its identity in the index is its key, see
    ``Ingestor.ingest``) with its label base: its path relative to the folder it was found in, or its file name
    when it was given itself. A file given twice is read once.
    """
    files: dict[Path, str] = {}
    failures: list[Failure] = []

    def add(found: Path, base: str) -> None:
        if not is_text_name(found):  # the index keeps paths as UTF-8 text, and JSON could not print it either
            failures.append(Failure(shown_path(found), "its path is not valid UTF-8 text: rename the file, or the "
                                    "folder whose name shows \ufffd", "UnicodeEncodeError"))
        elif found not in files:
            files[found] = base

    for path in paths:
        root = Path(os.path.abspath(path))
        if path.is_dir():
            for found in sorted(root.rglob("*")):
                relative = found.relative_to(root)
                if found.is_file() and not any(part.startswith(".") for part in relative.parts):
                    add(found, relative.as_posix())
        elif path.is_file():
            add(root, root.name)
        else:
            failures.append(Failure(shown_path(path), "no such file or folder", "FileNotFoundError"))
    return files, failures


def is_text_name(path: Path) -> bool:
    """Whether a path is text: a file name that is not valid UTF-8 comes back from the system with surrogates."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_path(path: Path) -> str:
    """A path as printable text: the bytes of a name that are not UTF-8 shown as U+FFFD."""
    return os.fsencode(path).decode("utf-8", "replace")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def chunk_context(chunk: Chunk, settings: Settings, title: str | None = None) -> str | None:
    """The document's title and the heading a chunk sits under (either where the other is missing), indexed with
    it, so a passage deep in a section still matches the section's subject, and a page of a paper or a manual
    still matches the document's name."""
    context = chunk.section or title
    if title and chunk.section and title not in chunk.section:
        context = f"{title} › {chunk.section}"
    if not settings.heading_context or not context or chunk.text.lstrip("# ").startswith(context):
        return None
    return context


def indexed_texts(chunks: list[Chunk], settings: Settings, title: str | None) -> tuple[list[str | None], list[str]]:
    """Each chunk's context (``chunk_context``) and the text embedded and indexed for it: the chunk with that line."""
    contexts = [chunk_context(c, settings, title) for c in chunks]
    return contexts, [indexed_text(c.text, ctx) for c, ctx in zip(chunks, contexts, strict=True)]


@dataclass(frozen=True)
class _Job:
    """A file to read: it is new, changed, or re-indexed."""

    path: Path  # absolute: where it is read from (the document's identity is its key)
    base: str  # its label base: the path relative to the folder it came from, or its file name
    index: int  # its position in this run, for progress
    sha256: str


@dataclass(frozen=True)
class _Ready:
    """A file read and split, waiting for its vectors."""

    job: _Job
    document: LoadedDocument
    chunks: list[Chunk]
    contexts: list[str | None]
    texts: list[str]  # what is embedded: each chunk with its context line


class Ingestor:
    """Runs ingest against one store. Holds the write lock for the whole run."""

    def __init__(
        self,
        store: Index,
        *,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or get_settings()
        self.embedder = embedder or embedder_for(store.dir)
        self.on_progress = on_progress or (lambda _: None)
        self.recipe = recipe(self.settings, self.embedder)
        self._total = 0  # files in the current run, for progress

    def split_config(self) -> SplitConfig:
        return SplitConfig.of(self.embedder, self.settings)

    def ingest(
        self, paths: Iterable[Path], *, bases: dict[Path, str] | None = None, force: bool = False
    ) -> IngestReport:
        """Ingest files and folders. For folders, documents whose files are gone from them are removed.

        A document is its file's key (``rag.index.identity.document_key``: the same on every machine), so a file
        reached twice in one run (a folder and a symlink to it) is read once, under the first path. The same bytes
        under two names (a copy, a hard link) are indexed once too: the later name is reported unchanged with a
        note "same content as ..." (two entries would only crowd the same passage twice into every answer). A
        document is labelled by its path relative to the folder it was ingested from (a file given itself: its
        name), lengthened by the store only when two would share a label. ``bases`` sets other label bases for some
        files; ``force`` reads and embeds files again even when they are unchanged (re-index).
        """
        started = time.perf_counter()
        paths = [Path(p) for p in paths]
        report = IngestReport()
        found, report.failed = collect_files(paths)
        found.update({Path(os.path.abspath(p)): base for p, base in (bases or {}).items() if Path(p).is_file()})
        table, host = mount_table(), host_id()
        keyed: dict[str, tuple[Path, str]] = {}
        for path, base in found.items():
            keyed.setdefault(document_key(path, table=table, host=host), (path, base))
        files = dict(keyed.values())
        keys = {path: key for key, (path, _) in keyed.items()}
        self._total = len(files)
        with self._writer(files):
            jobs = self._files_to_read(files, keys, force, report)
            if jobs and (self.settings.ingest_cluster or self.settings.ingest_workers):
                self._fan_out(jobs, report)
            else:
                self._read_and_embed(jobs, report)
            for folder in (p for p in paths if p.is_dir()):
                report.removed.extend(self._remove_missing(folder, table, host))
        report.seconds = time.perf_counter() - started
        return report

    def remove(self, names: Iterable[str]) -> tuple[list[str], list[Failure]]:
        """Delete documents by label (as ``--list`` shows them) or by the path of their file."""
        removed: list[str] = []
        failures: list[Failure] = []
        with self._writer({}):
            for name in names:
                # A name that is not UTF-8 was never stored (the index keeps text) and cannot be looked up.
                if is_text_name(Path(name)) and (
                    self.store.remove_document(name) or self.store.remove_document(os.path.abspath(name))
                ):
                    removed.append(name)
                else:
                    failures.append(Failure(shown_path(Path(name)), "no document with this name in the index",
                                            "NotInIndex"))
        return removed, failures

    @contextmanager
    def _writer(self, files: dict[Path, str]) -> Iterator[Index]:
        """The index's write lock. When another process or session holds it, say so (a "waiting" event) and wait
        up to ``write_wait_seconds`` before giving up with a StoreError that says the index is busy."""
        stack = ExitStack()
        try:
            stack.enter_context(self.store.writer(timeout=0.2))
        except StoreError:
            first = next(iter(files), Path(self.store.dir))
            self.on_progress(Progress(first, 0, len(files), "waiting", message="waiting for another ingest to finish"))
            stack.enter_context(self.store.writer(timeout=self.settings.write_wait_seconds))
        with stack:
            yield self.store

    def _progress(self, job: _Job, stage: Stage, done: int = 0, chunks: int = 0, message: str = "") -> None:
        self.on_progress(Progress(job.path, job.index, self._total, stage, done, chunks, message))

    def _files_to_read(self, files: dict[Path, str], keys: dict[Path, str], force: bool,
                       report: IngestReport) -> list[_Job]:
        """The files that are new or changed (or all, with ``force``); unchanged ones are reported as such, and so
        are the later names of content already met in this run (their own earlier documents are removed)."""
        jobs: list[_Job] = []
        first: dict[str, str] = {}  # sha256 -> the label (or label base) of the first file with that content
        for index, (path, base) in enumerate(files.items()):
            job = _Job(path, base, index, "")
            self._progress(job, "start")
            try:
                sha = file_sha256(path)
            except OSError as exc:
                failure = failure_reason(exc)
                self._fail(report, path, failure.reason, index, len(files), failure.kind)
                continue
            existing = self.store.document_at(keys[path])  # the key made above: the mounts are not read again
            if sha in first:
                if existing and self.store.remove_document(existing.key or str(path)):
                    report.removed.append(existing.name)
                report.unchanged.append(base)
                report.notes.append(Note(str(path), f"same content as {first[sha]}: indexed once"))
                self._progress(job, "unchanged", message=f"same content as {first[sha]}")
                continue
            if existing and existing.sha256 == sha and existing.recipe == self.recipe and not force:
                first[sha] = existing.name
                report.unchanged.append(existing.name)
                self._progress(job, "unchanged")
                continue
            first[sha] = base
            jobs.append(_Job(path, base, index, sha))
        return jobs

    def _read_and_embed(self, jobs: list[_Job], report: IngestReport) -> None:
        """Here, in this process: files read one step ahead (``ingest.parse``), chunks embedded in windows."""
        ahead = PARSE_AHEAD_FILES if self.settings.parse_ahead else 0
        window: list[_Ready] = []
        for job, parsed in zip(jobs, parse_in_order([j.path for j in jobs], self.split_config(), ahead=ahead),
                               strict=True):
            if isinstance(parsed, ParseFailure):
                self._fail(report, job.path, parsed.reason, job.index, self._total, parsed.kind)
                continue
            window.append(self._ready(job, parsed))
            if sum(len(ready.texts) for ready in window) >= self.settings.embed_window:
                self._embed_and_store(window, report)
                window = []
        self._embed_and_store(window, report)

    def _fan_out(self, jobs: list[_Job], report: IngestReport) -> None:
        """On the workers of a Dask cluster (``ingest.fanout``): each file read and embedded there, then stored
        here as it comes back, in its own transaction, as above. Only this process writes."""
        from ingest.fanout import FanOut  # dask loads only for a run that fans out

        with FanOut.open(self.settings, self.embedder) as cluster:
            for n, outcome in cluster.read_and_embed([job.path for job in jobs]):
                job = jobs[n]
                if isinstance(outcome, ParseFailure):
                    self._fail(report, job.path, outcome.reason, job.index, self._total, outcome.kind)
                    continue
                ready = _Ready(job, outcome.document, outcome.chunks, outcome.contexts, outcome.texts)
                self._progress(job, "parsed", 0, len(ready.texts), f"{len(ready.texts)} chunks")
                self._progress(job, "embedding", len(ready.texts), len(ready.texts))
                self._store(ready, list(outcome.vectors), report)

    def _ready(self, job: _Job, parsed: Parsed) -> _Ready:
        contexts, texts = indexed_texts(parsed.chunks, self.settings, parsed.document.title)
        self._progress(job, "parsed", 0, len(texts), f"{len(texts)} chunks")
        return _Ready(job, parsed.document, parsed.chunks, contexts, texts)

    def _embed_and_store(self, window: list[_Ready], report: IngestReport) -> None:
        """Embed the window's chunks together, then store each file in its own transaction. When embedding the
        window fails, each of its files is embedded on its own, so only the file whose text fails is failed."""
        if not window:
            return
        try:
            vectors = embed_groups(
                self.embedder, self.store, [r.texts for r in window], [[c.n_tokens for c in r.chunks] for r in window],
                batch_size=self.settings.embed_batch_size,
                on_progress=lambda i, done, total: self._progress(window[i].job, "embedding", done, total),
            )
        except (StoreError, EmbeddingError):
            raise  # the index or the embeddings server cannot be used: no use going on with the other files
        except Exception as exc:  # noqa: BLE001 - the model (or its server) failed: these files fail, not the run
            if len(window) > 1:
                for ready in window:
                    self._embed_and_store([ready], report)
                return
            failure = failure_reason(exc)
            self._fail(report, window[0].job.path, failure.reason, window[0].job.index, self._total, failure.kind)
            return
        for ready, file_vectors in zip(window, vectors, strict=True):
            self._store(ready, file_vectors, report)

    def _store(self, ready: _Ready, vectors: list[np.ndarray], report: IngestReport) -> None:
        job, document = ready.job, ready.document
        try:
            stored = self.store.put_document(
                path=job.path,
                base=job.base,
                kind=document.kind,
                sha256=job.sha256,
                size=job.path.stat().st_size,
                pages=document.pages,
                recipe=self.recipe,
                chunks=[
                    NewChunk(c.text, c.page, c.section, c.start, c.end, c.n_tokens, ctx, sha256_text(text), v)
                    for c, ctx, text, v in zip(ready.chunks, ready.contexts, ready.texts, vectors, strict=True)
                ],
            )
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - one file's failure must never take the batch down
            failure = failure_reason(exc)
            self._fail(report, job.path, failure.reason, job.index, self._total, failure.kind)
            return
        (report.updated if stored.replaced else report.added).append(stored.label)
        report.chunks += len(ready.chunks)
        report.ocr_pages += len(document.ocr_pages)
        report.notes += [Note(str(job.path), note) for note in document.notes]
        self._progress(job, "done", len(ready.chunks), len(ready.chunks), "; ".join(document.notes))

    def _remove_missing(self, folder: Path, table: list[Mount], host: str) -> list[str]:
        """Documents whose keys lie inside ``folder``'s key (whichever path or host wrote them) and whose files no
        longer exist there. Another host's own files have keys of that host: never gone for this one."""
        prefix = document_key(folder, table=table, host=host).rstrip("/") + "/"
        real = os.path.realpath(folder)
        gone = [doc for doc in self.store.documents() if doc.key and doc.key.startswith(prefix)
                and not os.path.lexists(os.path.join(real, doc.key[len(prefix) :]))]
        for doc in gone:  # by key: removing one may shorten the labels of the others
            self.store.remove_document(doc.key)
        return [doc.name for doc in gone]

    def _fail(self, report: IngestReport, path: Path, reason: str, index: int, total: int,
              kind: str | None = None) -> None:
        report.failed.append(Failure(str(path), reason, kind))
        self.on_progress(Progress(path, index, total, "failed", message=reason))
