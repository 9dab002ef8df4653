"""PDF: one record per page with its page number (the text layer, read by PDFium); pages without one are read by OCR.

PDFium (pypdfium2, C++) opens the file and reads it: bench/pdf_text.py measured its text extraction 10 times as fast
as pypdf's pure-Python content-stream parser on 25 real PDFs (965 pages), with the same words outside formulas
(docs/benchmarks.md). pypdf opens a file only when PDFium cannot, for what it does best there: telling a damaged,
truncated or password-protected file apart (the error names the cause), and reading what it can of a file PDFium
refuses. A page PDFium cannot read is read by pypdf instead. (Opening with pypdf first cost 4 of the 10.6 CPU
seconds of reading those 25 files: it walks the whole page tree just to count the pages.)

The document's title (its metadata, or else the largest type on page 1) is kept, so every chunk can be indexed
with it: a question naming the paper finds it even when the passage never repeats the title. The PDF's outline
(bookmarks) gives each stretch of a page its section, so a chunk is indexed with the heading it sits under even on
the fifth page of that section.
"""

from __future__ import annotations

import io
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.loaders.base import LoadedDocument, LoadError, Record
from ingest.loaders.ocr import read_pdf_pages
from ingest.normalize import document_words, normalize_text

_NOT_A_TITLE = re.compile(
    r"(?i)^(untitled|document\d*|slide \d+|microsoft \w+ - .*|arxiv:.*)$|\.(docx?|pdf|tex|dvi|ps|indd)$"
)
_MAX_TITLE = 200


@dataclass
class _Read:
    """What a PDF reader got from the file: page number -> text layer, for the pages it read."""

    pages: int
    texts: dict[int, str] = field(default_factory=dict)
    title: str | None = None  # the metadata title
    heading: str | None = None  # the largest type on page 1
    outline: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load_pdf(path: Path, data: bytes) -> LoadedDocument:
    _check_bytes(data)
    read = _read_pdfium(data)
    if read is None:  # PDFium refused the file: pypdf reads it all, or says why it cannot
        read = _read_pypdf(data, None)
    elif unread := [n for n in range(1, read.pages + 1) if n not in read.texts]:  # pages PDFium failed on
        rescued = _read_pypdf(data, unread, quiet=True)
        read.texts |= rescued.texts
        read.warnings += rescued.warnings
    words = document_words(read.texts.values())
    texts = {number: normalize_text(text, words) for number, text in read.texts.items()}
    without_text = [n for n in range(1, read.pages + 1) if not texts.get(n)]
    ocr_pages: list[int] = []
    warnings = read.warnings
    if without_text:
        ocr, ocr_warnings = read_pdf_pages(data, without_text)
        warnings += ocr_warnings
        ocr_words = words | document_words(ocr.values())
        for number, text in ocr.items():
            texts[number] = normalize_text(text, ocr_words)
            ocr_pages += [number] if texts[number] else []
    records = _sectioned(texts, read.outline)
    if not records:
        raise LoadError(
            f"no text in {read.pages} page(s), not even by OCR: the pages hold no readable writing"
        )
    title = _plausible(read.title) or (read.heading if 1 not in ocr_pages else None)
    return LoadedDocument(path=path, kind="pdf", records=records, pages=read.pages, title=title,
                          ocr_pages=ocr_pages, warnings=warnings)


def _check_bytes(data: bytes) -> None:
    if not data.lstrip().startswith(b"%PDF"):
        raise LoadError("not a PDF file (it does not start with the %PDF header)")
    if b"%%EOF" not in data[-2048:]:
        raise LoadError("the PDF is truncated or incomplete (no end-of-file marker)")


def _read_pdfium(data: bytes) -> _Read | None:
    """Every page's text, the metadata title, page 1's heading and the outline, read by PDFium; None when PDFium
    cannot open the file (a password, damage it cannot repair) or finds no page: pypdf then says why."""
    import pypdfium2

    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError:
        return None
    try:
        if len(document) == 0:
            return None
        read = _Read(pages=len(document))
        for index in range(len(document)):
            try:
                page = document[index]
                textpage = page.get_textpage()
                read.texts[index + 1] = _pdfium_clean(textpage.get_text_range())
                if index == 0:
                    read.heading = _heading(_sized_runs(textpage))
                textpage.close()
                page.close()
            except pypdfium2.PdfiumError:
                continue
        try:
            read.title = document.get_metadata_dict().get("Title") or None
        except (pypdfium2.PdfiumError, UnicodeDecodeError):  # damaged metadata only costs the title
            read.title = None
        read.outline = _outline(document, len(document))
    finally:
        document.close()
    return read


def _read_pypdf(data: bytes, only: list[int] | None, quiet: bool = False) -> _Read:
    """The pages' text read by pypdf (all of them, or ``only`` these numbers), or a LoadError saying why the file
    cannot be opened (``quiet``: an empty read instead, when PDFium already read the rest)."""
    try:
        pages, title = _open(data)
    except LoadError:
        if quiet:
            return _Read(pages=0, warnings=[f"page {n}: the text layer could not be read" for n in only or []])
        raise
    read = _Read(pages=len(pages), title=title)
    for number in only or range(1, len(pages) + 1):
        if number > len(pages):
            read.warnings.append(f"page {number}: the file lists it but holds no such page")
            continue
        try:
            if number == 1 and only is None:
                read.texts[1], read.heading = _text_and_heading(pages[0])
            else:
                read.texts[number] = pages[number - 1].extract_text() or ""
        except Exception as exc:  # noqa: BLE001 - pypdf raises many types on damaged content streams
            read.warnings.append(f"page {number}: the text layer could not be read ({type(exc).__name__})")
    return read


def _open(data: bytes) -> tuple[list[Any], str | None]:
    """The pages and the metadata title, read by pypdf, or a LoadError saying why the file cannot be opened."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PdfReadError, PyPdfError

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
    if not pages:
        raise LoadError("the PDF has no pages")
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # noqa: BLE001 - damaged metadata only costs the title
        title = None
    return pages, title if isinstance(title, str) else None


def pdfium_text(data: bytes) -> list[str]:
    """The text layer of every page, read by PDFium (empty for a page it cannot read)."""
    read = _read_pdfium(data)
    return [read.texts.get(number, "") for number in range(1, read.pages + 1)] if read else []


_MAX_OUTLINE = 5000  # bookmarks read at most (a hostile file can hold millions)


def _outline(document: Any, pages: int) -> list[tuple[int, str]]:
    """The bookmarks that point at a page, in the outline's order: (page number, title)."""
    import pypdfium2

    entries: list[tuple[int, str]] = []
    try:
        for bookmark in document.get_toc(max_depth=8):
            destination = bookmark.get_dest()
            index = destination.get_index() if destination is not None else None
            title = " ".join((bookmark.get_title() or "").split())
            if index is not None and 0 <= index < pages and _WORDS.search(title):
                entries.append((index + 1, title[:_MAX_TITLE]))
            if len(entries) >= _MAX_OUTLINE:
                break
    except (pypdfium2.PdfiumError, ValueError, OSError):  # a damaged outline only costs the sections
        return []
    return entries


_WORDS = re.compile(r"\w+")


def _sectioned(pages: dict[int, str], outline: list[tuple[int, str]]) -> list[Record]:
    """The pages as records, each page cut where the outline's sections begin on it (found by their titles at the
    start of a line), each part with the title of the section it belongs to: the deepest outline entry in force
    (its parents' titles too made the indexed context longer and found fewer pages: docs/benchmarks.md, "Pages of
    real PDFs"). A title not found in the text is taken to begin where the last one did."""
    starting: dict[int, list[str]] = {}
    for page, title in outline:
        starting.setdefault(page, []).append(title)
    section: str | None = None
    records: list[Record] = []
    for number in sorted(set(pages) | set(starting)):
        text = pages.get(number, "")
        cuts: list[tuple[int, str | None]] = [(0, section)]
        for section in starting.get(number, []):  # the last one stays in force for the pages after
            found = _find_title(section, text, cuts[-1][0])
            cuts.append((cuts[-1][0] if found is None else found, section))
        parts = [(begin, end, name) for (begin, name), (end, _) in zip(cuts, [*cuts[1:], (len(text), None)])]
        merged: list[tuple[int, int, str | None]] = []
        for begin, end, name in parts:
            if merged and len(text[merged[-1][0]:merged[-1][1]].strip()) < _MIN_PART:
                begin = merged.pop()[0]  # a heading alone (or a page number before it) goes with what follows
            merged.append((begin, end, name))
        for begin, end, name in merged:
            part = text[begin:end]
            if part.strip():
                lead = len(part) - len(part.lstrip())
                records.append(Record(text=part.strip(), page=number, section=name, offset=begin + lead))
    return records


_MIN_PART = 80  # characters: a shorter stretch before the next heading is not a section of its own


def _find_title(title: str, text: str, start: int) -> int | None:
    """Where a heading begins in a page's text, from ``start``: a line that holds the title alone (any case, after
    its number), or else a line that opens with it as written (a run-in heading: "Xticlabels Axis tick labels...")."""
    words = [re.escape(word) for word in _WORDS.findall(title)]
    if not words:
        return None
    body = r"\W*".join(words)
    number = r"[^\w\n]*(?:\d+(?:\.\d+)*\.?[ \t]+)?"  # the outline may leave out the heading's number ("11.6.2 ")
    alone = re.compile(rf"(?m)^{number}{body}[^\w\n]*$", re.IGNORECASE).search(text, start)
    match = alone or re.compile(rf"(?m)^{number}{body}(?!\w)").search(text, start)
    return match.start() if match else None


# PDFium writes a hyphen it judged to break a word at a line's end as U+FFFE (U+0002 in older builds) and drops the
# line break after it: written back as hyphen and line break, so normalize_text joins the word only where the
# document uses it whole elsewhere, as it does for pypdf's text ("exam-ple" joined, "mean-pooling" kept).
_PDFIUM_HYPHEN = re.compile("[\u0002\ufffe][ \t\r\n]*")
# Glyphs without a Unicode mapping (a formula's symbols in TeX's math fonts) come back as control characters.
_UNMAPPED = re.compile("[\u0000\u0001\u0003-\u0008\u000e-\u001f]")


# The XeTeX logo sets its E reversed (U+018E): "XƎLATEX" is the word XeLaTeX.
_XETEX = re.compile("X\u018e(?=TEX|LATEX)", re.IGNORECASE)


def _pdfium_clean(text: str) -> str:
    return _XETEX.sub("XE", _UNMAPPED.sub("", _PDFIUM_HYPHEN.sub("-\n", text)))


def _text_and_heading(page: Any) -> tuple[str, str | None]:
    """The page's text, and the run of text set in the largest type when it stands out from the body text."""
    runs: list[tuple[float, str]] = []

    def visit(text: str, cm: list[float], tm: list[float], _font: object, font_size: float) -> None:
        # where the text's baseline and height point on the page: the text matrix, then the page's matrix
        across = (tm[0] * cm[0] + tm[1] * cm[2], tm[0] * cm[1] + tm[1] * cm[3])
        height = math.hypot(tm[2] * cm[0] + tm[3] * cm[2], tm[2] * cm[1] + tm[3] * cm[3])
        if text.strip() and abs(across[1]) <= abs(across[0]):  # not sideways, like arXiv's stamp in the margin
            runs.append((round(abs(font_size) * height, 1), text))

    text = page.extract_text(visitor_text=visit) or ""
    return text, _heading(runs)


def _sized_runs(textpage: Any) -> list[tuple[float, str]]:
    """The page's text as runs of one type size (the font size times the character's scale on the page), as
    ``_text_and_heading`` gets them from pypdf; sideways text is left out, and spaces and line breaks PDFium
    generated join the run they sit in (a title set on two lines stays one heading)."""
    import pypdfium2.raw as pdfium_c

    runs: list[tuple[float, str]] = []
    size: float | None = None
    characters: list[str] = []
    matrix = pdfium_c.FS_MATRIX()
    for index in range(min(textpage.count_chars(), _MAX_HEADING_SCAN)):
        code = pdfium_c.FPDFText_GetUnicode(textpage, index)
        character = chr(code) if 0 < code < 0x110000 else ""
        if not character.strip() or pdfium_c.FPDFText_IsGenerated(textpage, index) == 1:
            characters.append(" " if not character.strip() else character)
            continue
        pdfium_c.FPDFText_GetMatrix(textpage, index, matrix)
        sideways = abs(matrix.b) > abs(matrix.a)  # like arXiv's stamp in the margin
        here = None if sideways else round(pdfium_c.FPDFText_GetFontSize(textpage, index)
                                           * math.hypot(matrix.c, matrix.d), 1)
        if here != size:
            if size is not None and characters:
                runs.append((size, "".join(characters)))
            size, characters = here, []
        characters.append(character)
    if size is not None and characters:
        runs.append((size, "".join(characters)))
    return runs


_MAX_HEADING_SCAN = 20_000  # characters of page 1 looked at for its heading (a page holds a few thousand)


def _heading(runs: list[tuple[float, str]]) -> str | None:
    if not runs:
        return None
    characters: dict[float, int] = {}
    for size, text in runs:
        characters[size] = characters.get(size, 0) + len(text.strip())
    body = max(characters, key=lambda size: characters[size])
    largest = max(characters)
    if largest < body * 1.2:
        return None
    first = next(i for i, (size, _) in enumerate(runs) if size >= largest * 0.9)
    parts: list[str] = []
    for size, text in runs[first:]:
        if size < largest * 0.9:
            break
        parts.append(text)
    return _plausible(" ".join(parts))


def _plausible(title: str | None) -> str | None:
    """A title worth indexing: some letters, not a file name or an editor's placeholder, not a paragraph."""
    if not title:
        return None
    title = " ".join(title.split())
    if not re.search(r"[^\W\d_]{2}", title) or _NOT_A_TITLE.search(title) or len(title) > _MAX_TITLE:
        return None
    return title
