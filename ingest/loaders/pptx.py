"""PowerPoint (.pptx) with python-pptx: one record per slide, its number as the page and its title as the section.

A slide's text is read top to bottom, left to right, through groups and tables; its speaker notes follow.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.loaders.base import LoadedDocument, LoadError, Record
from ingest.loaders.office import read_package
from ingest.normalize import normalize_text


def load_pptx(path: Path, data: bytes) -> LoadedDocument:
    import pptx

    return read_package(data, lambda f: _read(path, pptx.Presentation(f)), app="PowerPoint", suffix=".pptx")


def _read(path: Path, presentation: Any) -> LoadedDocument:
    slides = list(presentation.slides)
    records: list[Record] = []
    for number, slide in enumerate(slides, start=1):
        title = _title(slide)
        parts = [_text(shape) for shape in _reading_order(slide.shapes)]
        notes = _notes(slide)
        if notes:
            parts.append(f"Speaker notes: {notes}")
        text = normalize_text("\n".join(p for p in parts if p))
        if text:
            records.append(Record(text=text, page=number, section=title))
    if not slides:
        raise LoadError("the PowerPoint file has no slides")
    if not records:
        raise LoadError(f"no text on any of the {len(slides)} slide(s)")
    title = (presentation.core_properties.title or "").strip() or None
    return LoadedDocument(path=path, kind="pptx", records=records, pages=len(slides), title=title)


def _title(slide: Any) -> str | None:
    shape = slide.shapes.title
    text = " ".join(shape.text_frame.text.split()) if shape is not None and shape.has_text_frame else ""
    return text or None


def _reading_order(shapes: Any) -> Iterator[Any]:
    """Shapes top to bottom, then left to right; a group's shapes in its place."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    for shape in sorted(shapes, key=lambda s: (s.top or 0, s.left or 0)):
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _reading_order(shape.shapes)
        else:
            yield shape


def _text(shape: Any) -> str:
    if shape.has_text_frame:
        return shape.text_frame.text.strip()
    if getattr(shape, "has_table", False) and shape.has_table:
        rows = (" | ".join(c.text.strip() for c in row.cells if c.text.strip()) for row in shape.table.rows)
        return "\n".join(r for r in rows if r)
    return ""


def _notes(slide: Any) -> str:
    if not slide.has_notes_slide or slide.notes_slide.notes_text_frame is None:
        return ""
    return " ".join(slide.notes_slide.notes_text_frame.text.split())
