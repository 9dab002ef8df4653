"""Markdown, cut at its headings. Word files and web pages are turned into Markdown first and cut the same way."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.loaders.base import LoadedDocument, LoadError, Record
from ingest.loaders.text import decode_text
from ingest.normalize import normalize_text

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def load_md(path: Path, data: bytes) -> LoadedDocument:
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
