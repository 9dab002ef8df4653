"""Web pages (.html, .htm): the article text only, through trafilatura, with its headings as sections.

trafilatura drops navigation, headers, footers, scripts and styles, and writes the article as Markdown (headings
as ``#`` lines, tables as rows), which is then cut at its headings like a Markdown file.
"""

from __future__ import annotations

import re
from pathlib import Path

from ingest.loaders.base import LoadedDocument, LoadError
from ingest.loaders.markdown import split_markdown_sections
from ingest.normalize import normalize_text

_TABLE_RULE = re.compile(r"^\|?(?:\s*:?-{3,}:?\s*\|)+\s*:?-*:?\s*$", re.MULTILINE)  # "|---|---|" under a header row
_CELL_EDGES = re.compile(r"^\| (.*?) \|\s*$", re.MULTILINE)
_EMPHASIS = re.compile(r"(\*\*|(?<![\\*])\*|`)(?=\S)(.+?)(?<=[^\s\\])\1")  # **bold**, *italic*, `code`
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>])")  # trafilatura's escapes of Markdown punctuation


def load_html(path: Path, data: bytes) -> LoadedDocument:
    import trafilatura

    try:
        article = trafilatura.extract(
            data, output_format="markdown", include_tables=True, include_formatting=True, include_comments=False,
            include_images=False, include_links=False, deduplicate=False,
            # With little or no article, trafilatura's default falls back to the whole page: menu, banner and all.
            favor_precision=True,
        )
        metadata = trafilatura.extract_metadata(data)
    except Exception as exc:  # noqa: BLE001 - lxml and the date/encoding guessers fail many ways on broken pages
        raise LoadError(f"the web page could not be read ({type(exc).__name__}: {exc})"[:500]) from exc
    records = split_markdown_sections(normalize_text(_plain(article or "")))
    if not records:  # nothing, or headings alone
        raise LoadError("no article text in the web page (nothing but navigation, scripts or styles, or empty)")
    title = metadata.title.strip() if metadata is not None and metadata.title else None
    return LoadedDocument(path=path, kind="html", records=records, title=title)


def _plain(markdown: str) -> str:
    """Keep the headings (they make the sections); drop table rules, table edges and inline emphasis marks."""
    text = _CELL_EDGES.sub(r"\1", _TABLE_RULE.sub("", markdown))
    return _ESCAPED.sub(r"\1", _EMPHASIS.sub(r"\2", text))
