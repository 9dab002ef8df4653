"""Turn a file on disk into normalised text records: one per PDF page, one per Markdown section, one per text file.

Every failure becomes a ``LoadError`` whose message a person understands; the pipeline reports it against the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.normalize import normalize_text

SUPPORTED_SUFFIXES = (".pdf", ".txt", ".md", ".markdown")


class LoadError(Exception):
    """A file that cannot be ingested; the message says why in plain words."""


@dataclass(frozen=True)
class Record:
    """A stretch of a document's text with where it came from."""

    text: str
    page: int | None = None  # 1-based, PDFs only
    section: str | None = None  # nearest Markdown heading
    offset: int = 0  # character offset of ``text`` within its page (PDF) or the whole document (TXT/MD)


@dataclass
class LoadedDocument:
    path: Path
    kind: str  # "pdf" | "txt" | "md"
    records: list[Record]
    pages: int | None = None
    warnings: list[str] = field(default_factory=list)


def load_document(path: Path) -> LoadedDocument:
    """Read ``path`` into records, choosing the loader by file extension."""
    suffix = path.suffix.lower()
    loader = _LOADERS.get(suffix)
    if loader is None:
        shown = f"'{suffix}'" if suffix else "no extension"
        raise LoadError(f"unsupported file type ({shown}); supported: {', '.join(SUPPORTED_SUFFIXES)}")
    data = path.read_bytes()
    if not data.strip():
        raise LoadError("the file is empty")
    return loader(path, data)


# --- PDF -------------------------------------------------------------------------------------------------------------


def _load_pdf(path: Path, data: bytes) -> LoadedDocument:
    import io
    import logging

    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PdfReadError, PyPdfError

    if not data.lstrip().startswith(b"%PDF"):
        raise LoadError("not a PDF file (it does not start with the %PDF header)")
    if b"%%EOF" not in data[-2048:]:
        raise LoadError("the PDF is truncated or incomplete (no end-of-file marker)")
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns about every repaired xref on stderr
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except DependencyError as exc:
                raise LoadError(f"the PDF is encrypted with a cipher this install cannot read ({exc})") from exc
            if not opened:
                raise LoadError("the PDF is password-protected; remove the password and try again")
        pages = list(reader.pages)
    except LoadError:
        raise
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError,
            RecursionError) as exc:  # pypdf's limits on hostile files (LimitReachedError) are PyPdfError
        raise LoadError(f"the PDF is corrupt or unreadable ({type(exc).__name__}: {exc})") from exc

    records: list[Record] = []
    warnings: list[str] = []
    for number, page in enumerate(pages, start=1):
        try:
            text = normalize_text(page.extract_text() or "")
        except Exception as exc:  # pypdf raises many types on damaged content streams
            warnings.append(f"page {number}: text could not be extracted ({type(exc).__name__})")
            continue
        if text:
            records.append(Record(text=text, page=number))
    if not pages:
        raise LoadError("the PDF has no pages")
    if not records:
        raise LoadError(
            f"no extractable text in {len(pages)} page(s): it looks scanned or image-only; run OCR on it first"
        )
    return LoadedDocument(path=path, kind="pdf", records=records, pages=len(pages), warnings=warnings)


# --- plain text ------------------------------------------------------------------------------------------------------


def decode_text(data: bytes) -> str:
    """Decode bytes as UTF-8 (with or without BOM), UTF-16 with BOM, or the most likely legacy encoding."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace")  # a file cut short loses its last character, not all
        damaged = text.count("\ufffd")
        if damaged and (damaged > len(text) // 100 or len(text) < 100):
            raise LoadError("the file starts like UTF-16 text (byte-order mark) but is not valid UTF-16")
        return text
    if _looks_binary(data):
        raise LoadError("this looks like binary data, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        raise LoadError("the text encoding could not be recognised (not UTF-8, nor a known legacy encoding)")
    # On short texts the detector cannot tell the single-byte Latin code pages apart; when Windows-1252 (the
    # commonest legacy encoding) reads the bytes about as cleanly as the top guess, take it.
    best = min(matches, key=lambda m: m.chaos)
    western = next((m for m in matches if m.encoding == "cp1252" and m.chaos <= best.chaos + 0.1), None)
    return str(western or best)


def _looks_binary(data: bytes) -> bool:
    sample = data[:8192]
    if b"\x00" in sample:
        return True
    control = sum(1 for byte in sample if byte < 32 and byte not in (9, 10, 12, 13))
    return control > len(sample) * 0.05


def _load_txt(path: Path, data: bytes) -> LoadedDocument:
    text = normalize_text(decode_text(data))
    if not text:
        raise LoadError("the file holds no text")
    return LoadedDocument(path=path, kind="txt", records=[Record(text=text)])


# --- Markdown --------------------------------------------------------------------------------------------------------

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _load_md(path: Path, data: bytes) -> LoadedDocument:
    text = normalize_text(decode_text(data))
    if not text:
        raise LoadError("the file holds no text")
    records = split_markdown_sections(text)
    if not records:
        raise LoadError("the file holds only headings, no text")
    return LoadedDocument(path=path, kind="md", records=records)


def split_markdown_sections(text: str) -> list[Record]:
    """Cut Markdown at headings (outside code fences); each record keeps its nearest heading as ``section``."""
    records: list[Record] = []
    section: str | None = None
    start = 0
    offset = 0
    in_fence = False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _HEADING.match(line.rstrip("\n"))
        if heading:
            _append_section(records, text[start:offset], section, start)
            section = heading.group(2).strip()
            start = offset
        offset += len(line)
    _append_section(records, text[start:], section, start)
    return records


def _append_section(records: list[Record], chunk: str, section: str | None, start: int) -> None:
    stripped = chunk.strip()
    if stripped and not _HEADING.match(stripped):  # a heading with no body of its own adds nothing
        records.append(Record(text=stripped, section=section, offset=start + chunk.index(stripped[0])))


_LOADERS: dict[str, Callable[[Path, bytes], LoadedDocument]] = {
    ".pdf": _load_pdf,
    ".txt": _load_txt,
    ".md": _load_md,
    ".markdown": _load_md,
}
