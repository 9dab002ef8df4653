"""Word (.docx) with python-docx: paragraphs and tables in document order, headings as sections.

The body is written out as Markdown (headings as ``#`` lines, each table row as one line of cells joined by
`` | ``) and cut at its headings like a Markdown file, so a fact in a table stays next to its row's other cells.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ingest.loaders.base import LoadedDocument, LoadError
from ingest.loaders.markdown import split_markdown_sections
from ingest.loaders.office import read_package
from ingest.normalize import normalize_text

_HEADING_STYLE = re.compile(r"^(?:Heading|Überschrift|Titre|Título|Titolo|Kop)\s*(\d)$", re.IGNORECASE)


def load_docx(path: Path, data: bytes) -> LoadedDocument:
    import docx

    return read_package(data, lambda f: _read(path, docx.Document(f)), app="Word", suffix=".docx")


def _read(path: Path, document: Any) -> LoadedDocument:
    blocks = [_block(item) for item in document.iter_inner_content()]
    text = normalize_text("\n\n".join(b for b in blocks if b))
    if not text:
        raise LoadError("the Word file holds no text")
    title = (document.core_properties.title or "").strip() or None
    return LoadedDocument(path=path, kind="docx", records=split_markdown_sections(text), title=title)


def _block(item: Any) -> str:
    from docx.table import Table

    if isinstance(item, Table):
        return "\n".join(_row(row) for row in item.rows)
    text = item.text.strip()
    level = _heading_level(item.style.name if item.style is not None else "")
    return f"{'#' * level} {' '.join(text.split())}" if text and level else text


def _heading_level(style: str) -> int:
    if style.lower() == "title":
        return 1
    match = _HEADING_STYLE.match(style.strip())
    return min(int(match.group(1)), 6) if match else 0


def _row(row: Any) -> str:
    """A table row as one line; a merged cell, which python-docx repeats for every column it spans, counts once."""
    cells: list[str] = []
    previous = None
    for cell in row.cells:
        if cell._tc is not previous:  # noqa: SLF001 - the cell's XML element tells a merged cell's repeats apart
            cells.append(" ".join(cell.text.split()))
        previous = cell._tc  # noqa: SLF001
    return " | ".join(c for c in cells if c)
