"""Real Word, PowerPoint and web files for tests, written with python-docx, python-pptx and plain HTML."""

from __future__ import annotations

import io
from pathlib import Path

import docx
import pptx
from msoffcrypto.format.ooxml import OOXMLFile
from pptx.util import Inches


def make_docx(path: Path, blocks: list[tuple[str, object]], *, title: str | None = None) -> Path:
    """A Word file from ``(kind, content)`` blocks: ("heading1"/"heading2", text), ("p", text), ("table", rows)."""
    document = docx.Document()
    if title:
        document.core_properties.title = title
    for kind, content in blocks:
        if kind.startswith("heading"):
            document.add_heading(str(content), level=int(kind[-1]))
        elif kind == "p":
            document.add_paragraph(str(content))
        elif kind == "table":
            rows = list(content)  # type: ignore[call-overload]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    table.cell(r, c).text = value
    document.save(str(path))
    return path


def make_pptx(path: Path, slides: list[dict[str, str]]) -> Path:
    """A presentation, one slide per dict: "title", "body" (a text box), "notes" (speaker notes), "table" ("a|b")."""
    presentation = pptx.Presentation()
    for content in slides:
        slide = presentation.slides.add_slide(presentation.slide_layouts[5])  # "Title Only"
        slide.shapes.title.text = content.get("title", "")
        if "body" in content:
            box = slide.shapes.add_textbox(Inches(1), Inches(2), Inches(8), Inches(2))
            box.text_frame.text = content["body"]
        if "table" in content:
            cells = content["table"].split("|")
            table = slide.shapes.add_table(1, len(cells), Inches(1), Inches(5), Inches(8), Inches(1)).table
            for c, value in enumerate(cells):
                table.cell(0, c).text = value
        if "notes" in content:
            slide.notes_slide.notes_text_frame.text = content["notes"]
    presentation.save(str(path))
    return path


def encrypt_office_file(path: Path, password: str) -> Path:
    """Encrypt a .docx/.pptx in place with a password, as Office does (ECMA-376 agile encryption, msoffcrypto-tool)."""
    plain = io.BytesIO(path.read_bytes())
    out = io.BytesIO()
    OOXMLFile(plain).encrypt(password, out)
    path.write_bytes(out.getvalue())
    return path


def make_html(path: Path, title: str, article: str, *, nav: str = "Home · Products · About us · Contact") -> Path:
    """A web page with navigation, a script, a style and a footer around an article (``article`` is HTML)."""
    links = "".join(f'<li><a href="/{w.lower()}">{w}</a></li>' for w in nav.split(" · "))
    path.write_text(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>nav {{ float: left }} .banner {{ color: #333 }}</style>
<script>window.analytics = {{ track: function () {{ return "cookie consent banner"; }} }};</script>
</head><body>
<nav><ul>{links}</ul></nav>
<div class="banner">Subscribe to our newsletter for weekly offers!</div>
<main><article>{article}</article></main>
<footer><p>Copyright 2024 Example Press. All rights reserved. Privacy policy. Terms of use.</p></footer>
<script>document.querySelectorAll("nav a").forEach(function (a) {{ a.dataset.seen = "1"; }});</script>
</body></html>
""",
        encoding="utf-8",
    )
    return path
