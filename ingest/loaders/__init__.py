"""Turn a file on disk into normalised text records, each with where a reader finds it again: a PDF page, a slide,
the nearest heading of a Markdown, Word or web document.

One module per format; this one picks the loader by file extension. Every failure becomes a ``LoadError`` whose
message a person understands; the pipeline reports it against the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ingest.loaders.base import LoadedDocument, LoadError, Record
from ingest.loaders.docx import load_docx
from ingest.loaders.html import load_html
from ingest.loaders.markdown import load_md, split_markdown_sections
from ingest.loaders.pdf import load_pdf
from ingest.loaders.pptx import load_pptx
from ingest.loaders.text import decode_text, load_txt

__all__ = [
    "SUPPORTED_SUFFIXES", "LoadError", "LoadedDocument", "Record", "decode_text", "load_document",
    "split_markdown_sections",
]

_LOADERS: dict[str, Callable[[Path, bytes], LoadedDocument]] = {
    ".pdf": load_pdf,
    ".txt": load_txt,
    ".md": load_md,
    ".markdown": load_md,
    ".docx": load_docx,
    ".pptx": load_pptx,
    ".html": load_html,
    ".htm": load_html,
}
SUPPORTED_SUFFIXES = tuple(_LOADERS)


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
