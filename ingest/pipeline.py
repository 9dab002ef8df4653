"""Files in, chunks and vectors stored: hash → (skip if unchanged) → load → split → embed → store, one file at a time.

A file that fails is reported with its reason and never stops the others; what is already stored stays.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ingest.loaders import LoadError, load_document
from ingest.report import Failure, IngestReport, Note, Progress, ProgressCallback, Stage
from ingest.split import Chunk, Splitter
from rag.index.embedder import Embedder, get_embedder
from rag.index.records import NewChunk, StoreError, indexed_text, sha256_text
from rag.index.store import Store
from rag.settings import Settings, get_settings

SPLITTER_VERSION = 2  # 2: compound hyphens kept at line breaks, PDF chunks indexed with the title


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


def collect_files(paths: Iterable[Path]) -> tuple[list[Path], list[Failure]]:
    """Expand folders (recursively, skipping hidden entries) into files; paths that do not exist are failures."""
    files: list[Path] = []
    failures: list[Failure] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            files.append(path)
        else:
            failures.append(Failure(str(path), "no such file or folder", "FileNotFoundError"))
    return files, failures


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def chunk_context(chunk: Chunk, settings: Settings, title: str | None = None) -> str | None:
    """The heading indexed with a chunk, or the document's title where it has none (a PDF page), so a passage deep
    in a section still matches the section's subject, and a page of a paper still matches the paper's name."""
    context = chunk.section or title
    if not settings.heading_context or not context or chunk.text.lstrip("# ").startswith(context):
        return None
    return context


class Ingestor:
    """Runs ingest against one store. Holds the write lock for the whole run."""

    def __init__(
        self,
        store: Store,
        *,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or get_settings()
        self.embedder = embedder or get_embedder()
        self.on_progress = on_progress or (lambda _: None)
        self.recipe = recipe(self.settings, self.embedder)
        self._splitter: Splitter | None = None

    @property
    def splitter(self) -> Splitter:
        if self._splitter is None:
            self._splitter = Splitter(
                self.embedder.count_tokens,
                chunk_tokens=self.settings.chunk_tokens,
                overlap=self.settings.chunk_overlap,
                max_tokens=self.embedder.max_tokens,
            )
        return self._splitter

    def ingest(
        self, paths: Iterable[Path], *, names: dict[Path, str] | None = None, force: bool = False
    ) -> IngestReport:
        """Ingest files and folders. For folders, documents whose files are gone from them are removed.

        ``names`` maps a file to the name it is stored under (by default its file name); ``force`` reads and
        embeds files again even when they are unchanged (re-index).
        """
        started = time.perf_counter()
        paths = [Path(p) for p in paths]
        report = IngestReport()
        files, report.failed = collect_files(paths)
        with self.store.writer():
            seen: dict[str, Path] = {}
            for index, path in enumerate(files):
                name = (names or {}).get(path, path.name)
                if name in seen:
                    reason = f"another file with the same name was given in this run ({seen[name]}); rename one"
                    self._fail(report, path, reason, index, len(files))
                    continue
                seen[name] = path
                self._ingest_file(path, name, index, len(files), report, force)
            for folder in (p for p in paths if p.is_dir()):
                report.removed.extend(self._remove_missing(folder))
        report.seconds = time.perf_counter() - started
        return report

    def remove(self, names: Iterable[str]) -> tuple[list[str], list[Failure]]:
        removed: list[str] = []
        failures: list[Failure] = []
        with self.store.writer():
            for name in names:
                if self.store.remove_document(name):
                    removed.append(name)
                else:
                    failures.append(Failure(name, "no document with this name in the index", "NotInIndex"))
        return removed, failures

    def _ingest_file(
        self, path: Path, name: str, index: int, total: int, report: IngestReport, force: bool = False
    ) -> None:
        def progress(stage: Stage, done: int = 0, chunks: int = 0, message: str = "") -> None:
            self.on_progress(Progress(path, index, total, stage, done, chunks, message))

        progress("start")
        try:
            sha = file_sha256(path)
            existing = self.store.document(name)
            if existing and existing.sha256 == sha and existing.recipe == self.recipe and not force:
                report.unchanged.append(name)
                progress("unchanged")
                return
            document = load_document(path)
            chunks = self.splitter.split(document.records)
            if not chunks:
                raise LoadError("no text to index after splitting")
            progress("parsed", 0, len(chunks), f"{len(chunks)} chunks")
            contexts = [chunk_context(c, self.settings, document.title) for c in chunks]
            texts = [indexed_text(c.text, ctx) for c, ctx in zip(chunks, contexts, strict=True)]
            vectors = self._vectors(texts, lambda done, n: progress("embedding", done, n))
            replaced = self.store.put_document(
                name=name,
                path=str(path.resolve()),
                kind=document.kind,
                sha256=sha,
                size=path.stat().st_size,
                pages=document.pages,
                recipe=self.recipe,
                chunks=[
                    NewChunk(c.text, c.page, c.section, c.start, c.end, c.n_tokens, ctx, sha256_text(text), v)
                    for c, ctx, text, v in zip(chunks, contexts, texts, vectors, strict=True)
                ],
            )
        except LoadError as exc:
            self._fail(report, path, str(exc), index, total, "LoadError")
            return
        except OSError as exc:
            self._fail(report, path, f"cannot read the file ({exc.strerror or exc})", index, total, type(exc).__name__)
            return
        except StoreError:
            raise  # the index itself cannot be written: no use going on with the other files
        except Exception as exc:  # noqa: BLE001 - one file's bytes must never take the batch down
            reason = f"could not be ingested ({type(exc).__name__}: {exc})"[:500]
            self._fail(report, path, reason, index, total, type(exc).__name__)
            return
        (report.updated if replaced else report.added).append(name)
        report.chunks += len(chunks)
        report.ocr_pages += len(document.ocr_pages)
        report.notes += [Note(str(path), note) for note in document.notes]
        progress("done", len(chunks), len(chunks), "; ".join(document.notes))

    def _vectors(self, texts: list[str], on_progress: Callable[[int, int], None]) -> list[np.ndarray]:
        """Vectors for texts, reusing stored ones for texts already embedded (an edited file re-embeds its edits)."""
        hashes = [sha256_text(t) for t in texts]
        known = self.store.vectors_by_sha(hashes)
        todo = [i for i, h in enumerate(hashes) if h not in known]
        fresh = self.embedder.embed(
            [texts[i] for i in todo],
            batch_size=self.settings.embed_batch_size,
            on_progress=lambda done, _: on_progress(len(texts) - len(todo) + done, len(texts)),
        )
        on_progress(len(texts), len(texts))
        computed = dict(zip(todo, fresh, strict=True))
        return [computed[i] if i in computed else known[h] for i, h in enumerate(hashes)]

    def _remove_missing(self, folder: Path) -> list[str]:
        """Documents ingested from inside ``folder`` whose files no longer exist there."""
        root = folder.resolve()
        gone = [
            doc.name
            for doc in self.store.documents()
            if doc.path and Path(doc.path).is_relative_to(root) and not Path(doc.path).exists()
        ]
        for name in gone:
            self.store.remove_document(name)
        return gone

    def _fail(self, report: IngestReport, path: Path, reason: str, index: int, total: int,
              kind: str | None = None) -> None:
        report.failed.append(Failure(str(path), reason, kind))
        self.on_progress(Progress(path, index, total, "failed", message=reason))
