"""The user's document library: uploads saved safely, ingested with progress, listed, deleted, re-indexed.
``rag.service.Service`` is its one door for the page, the commands and the HTTP API.

Uploaded file names are untrusted. What is kept on disk lives in the upload folder under a sanitised name (no
folders, no traversal, no hidden or device names), and a different file with a name already taken gets a
numbered name ("report (2).pdf") instead of replacing the first one. The stored name is the document's label in
the index (lengthened to "uploads/report.pdf" only if a document from an ingested folder has the same label), so
citations always point at the file that was actually indexed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pypdf import PdfReader, PdfWriter

from ingest.loaders import SUPPORTED_SUFFIXES
from ingest.pipeline import Ingestor, file_sha256, is_text_name
from ingest.report import Failure, IngestReport, ProgressCallback
from rag.errors import ClusterError, EmbeddingError, StoreError, UploadError
from rag.index.identity import local_path
from rag.index.records import DocumentInfo
from rag.index.base import Index
from rag.settings import PROJECT_ROOT, Settings, get_settings

_UNSAFE = re.compile(r"[^\w\-. ()\[\]+,&@]+", re.UNICODE)
_MAX_NAME_BYTES = 200  # file systems allow 255 bytes a name; room is left for " (999)"
SAMPLE_QUESTIONS = PROJECT_ROOT / "data" / "sample" / "questions.json"


def sanitize_filename(name: str) -> str:
    """A safe file name from an untrusted one: its last path part, printable, no leading dots, bounded length."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")  # control and format characters
    name = _UNSAFE.sub("_", name).strip().lstrip(".").strip()
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    stem = stem.strip(" ._") or "document"
    suffix = suffix.lower()[:10]
    room = _MAX_NAME_BYTES - len(suffix.encode()) - 1
    stem = stem.encode()[:room].decode("utf-8", "ignore").rstrip(" ._") or "document"  # cut by bytes, whole chars
    return f"{stem}.{suffix}" if suffix else stem


@dataclass(frozen=True)
class Upload:
    name: str  # as the browser sent it
    data: bytes


@dataclass(frozen=True)
class Saved:
    original: str
    path: Path  # where it was kept


class Library:
    """One index plus the folder that keeps uploaded files."""

    def __init__(self, store: Index, *, settings: Settings | None = None) -> None:
        self.store = store
        self.settings = settings or get_settings()
        self.folder = self.settings.uploads_path  # made by the first upload: reading the library writes nothing

    def documents(self) -> list[DocumentInfo]:
        return self.store.documents()

    def suggested_questions(self, limit: int = 4) -> list[str]:
        """Questions to offer on an empty chat: one per document the reader added, newest first (named after the
        file: "What is garden club notes about?"), then the demo corpus's own questions, which fill the rest.
        (The index keeps no document titles or heading lists to draw better ones from.)"""
        docs = self.store.documents()
        names = {d.name for d in docs}
        curated = json.loads(SAMPLE_QUESTIONS.read_text()) if SAMPLE_QUESTIONS.is_file() else []
        covered = {q["source"] for q in curated}
        own = sorted((d for d in docs if d.name not in covered), key=lambda d: d.name)
        own.sort(key=lambda d: d.added_at, reverse=True)  # the latest first; added in the same second: A to Z
        questions = [f"What is {Path(d.name).stem.replace('_', ' ').replace('-', ' ')} about?" for d in own]
        questions += [q["question"] for q in curated if q["source"] in names]
        return questions[:limit]

    def check(self, upload: Upload) -> None:
        """Refuse what cannot be ingested before anything is written."""
        limit = self.settings.max_upload_mb * 1024 * 1024
        if len(upload.data) > limit:
            raise UploadError(
                f"{upload.name}: {len(upload.data) / 1048576:.1f} MB is over the {self.settings.max_upload_mb} MB limit"
            )
        suffix = Path(sanitize_filename(upload.name)).suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            raise UploadError(f"{upload.name}: unsupported file type; supported: {', '.join(SUPPORTED_SUFFIXES)}")

    def save(self, upload: Upload) -> Saved:
        """Write the upload under a safe, unused name (or reuse the file already holding the same bytes).

        The bytes are written aside first, then linked under the first free name: ``link`` fails if the name
        exists, so two sessions uploading the same name at once never overwrite each other's file."""
        self.check(upload)
        self.folder.mkdir(parents=True, exist_ok=True)
        wanted = sanitize_filename(upload.name)
        digest = hashlib.sha256(upload.data).hexdigest()
        stem, suffix = Path(wanted).stem, Path(wanted).suffix
        tmp = _write_aside(self.folder, upload.data)
        try:
            for n in range(1, 1000):
                candidate = self.folder / (wanted if n == 1 else f"{stem} ({n}){suffix}")
                if self.store.document_at(candidate) and not candidate.exists():
                    continue  # indexed from this path, its file gone: keep the name for that document
                try:
                    os.link(tmp, candidate)
                except FileExistsError:
                    if file_sha256(candidate) == digest:
                        return Saved(upload.name, candidate)
                    continue
                _fsync_dir(self.folder)
                return Saved(upload.name, candidate)
        finally:
            tmp.unlink(missing_ok=True)
        raise UploadError(f"{upload.name}: too many files with this name")

    def add(self, uploads: Iterable[Upload], on_progress: ProgressCallback | None = None) -> IngestReport:
        """Save and ingest uploads; refused ones are reported as failures under their original names."""
        refused: list[Failure] = []
        saved: list[Saved] = []
        for upload in uploads:
            try:
                saved.append(self.save(upload))
            except UploadError as exc:
                refused.append(Failure(upload.name, str(exc).removeprefix(f"{upload.name}: "), "UploadError"))
            except OSError as exc:
                refused.append(Failure(upload.name, f"could not be saved ({exc.strerror or exc})", type(exc).__name__))
        try:
            report = Ingestor(self.store, settings=self.settings, on_progress=on_progress).ingest(
                [s.path for s in saved]
            ) if saved else IngestReport()
        except (StoreError, EmbeddingError, ClusterError) as exc:  # the index stayed busy, a server is down
            report = IngestReport(failed=[Failure(os.path.abspath(s.path), str(exc), type(exc).__name__) for s in saved])
        by_path = {os.path.abspath(s.path): s.original for s in saved}
        for item in [*report.failed, *report.notes]:  # name the file as the user knows it
            item.path = by_path.get(item.path, item.path)
        report.failed[:0] = refused
        for kept in saved:  # a file that is no document (it failed, or its bytes are another upload's) is not kept
            if not self.store.document_at(kept.path):
                kept.path.unlink(missing_ok=True)
        return report

    def page_pdf(self, name: str, page: int) -> bytes | None:
        """One page of an indexed PDF as a small PDF of its own, so a citation can show the page it came from.

        None when there is nothing trustworthy to show: not a PDF, no such page, or the file is gone or has changed
        since it was indexed (the page would not be the one the passage was read from)."""
        doc = self.store.document(name)
        path = _here(doc) if doc is not None else None
        if doc is None or doc.kind != "pdf" or path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != doc.sha256:
            return None
        try:
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                reader.decrypt("")  # only PDFs that open with the empty password were ever indexed
            if not 1 <= page <= len(reader.pages):
                return None
            writer = PdfWriter()
            writer.add_page(reader.pages[page - 1])
            out = io.BytesIO()
            writer.write(out)
        except Exception:  # noqa: BLE001 - a damaged PDF may fail in many ways; showing the page is optional
            return None
        return out.getvalue()

    def delete(self, names: Iterable[str]) -> IngestReport:
        """Remove documents (by label, as listed, or by their file's path) from the index, and the file of each one
        the upload folder holds: an uploaded copy has no other use, and a name left taken would number the next
        upload of it. Files elsewhere (ingested from a folder) are never touched. A name not in the index is a
        failure of its own. Raises ``StoreError`` (the index stays as it was) when another writer keeps the index
        busy for longer than the settings' write wait."""
        names = list(names)
        kept = {name: path for name in names if (path := self.uploaded_file(name)) is not None}
        removed, failed = Ingestor(self.store, settings=self.settings).remove(names)
        for name in removed:
            if name in kept:
                kept[name].unlink(missing_ok=True)
        return IngestReport(removed=removed, failed=failed)

    def uploaded_file(self, name: str) -> Path | None:
        """The file of the document ``name`` (label or path) when it is in the upload folder, else None."""
        if not is_text_name(Path(name)):  # never stored (the index keeps text), and not a valid SQL parameter
            return None
        doc = self.store.document(name) or self.store.document_at(name)
        if doc is None or not doc.path or Path(doc.path).resolve().parent != self.folder.resolve():
            return None
        return Path(doc.path)

    def reindex(self, on_progress: ProgressCallback | None = None) -> IngestReport:
        """Read every document again from its file and rebuild its chunks and vectors."""
        docs = [(d, path) for d in self.store.documents() if (path := _here(d)) is not None]  # another host's: not here
        present = {path: d.base or path.name for d, path in docs if path.is_file()}
        missing = [Failure(d.name, "its file is no longer on disk; delete it or upload it again", "FileNotFoundError")
                   for d, path in docs if not path.is_file()]
        try:
            report = Ingestor(self.store, settings=self.settings, on_progress=on_progress).ingest(
                list(present), bases=present, force=True
            )
        except (StoreError, EmbeddingError, ClusterError) as exc:  # busy index, a server down: nothing was changed
            report = IngestReport(failed=[Failure(str(path), str(exc), type(exc).__name__) for path in present])
        report.failed[:0] = missing
        return report


def _here(doc: DocumentInfo) -> Path | None:
    """Where this host reads a document's file: its key's path here (None for a file of another host, or on a
    share not mounted here); the path it was read from for a document without a key."""
    path = local_path(doc.key) if doc.key else doc.path
    return Path(path) if path else None


def _write_aside(folder: Path, data: bytes) -> Path:
    """The bytes in a hidden temporary file of ``folder``, on disk: a crash never leaves half a file under a
    real name (the caller links it into place)."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
