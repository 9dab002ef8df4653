"""Loaders and normalisation on real files: PDFs written with fpdf2/pypdf, text in several encodings."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ingest.loaders import LoadError, load_document, split_markdown_sections
from ingest.normalize import document_words, normalize_text
from tests.pdfs import make_encrypted_pdf, make_pdf, make_scanned_pdf, make_truncated_pdf


def test_normalize_separators_hyphens_and_spaces() -> None:
    raw = "Cafe\u0301 in\u00a0the  city\u2028next line\u2029new para\r\nwin-\ndows are trans-\n  parent.\n\n\n\nEnd \u200b"
    words = {"windows", "transparent"}  # the document uses both words elsewhere
    assert normalize_text(raw, words) == "Café in the city\nnext line\n\nnew para\nwindows are transparent.\n\nEnd"


def test_a_line_break_joins_a_split_word_only_when_the_document_uses_the_joined_word() -> None:
    text = "We train with mean-\npooling over an exam-\nple batch.\nEach example is short; trans-\nformers are not."
    assert normalize_text(text) == (
        "We train with mean-pooling over an example batch.\nEach example is short; trans-formers are not."
    )
    words = document_words(["A page that says transformers.", "Another page."])
    assert normalize_text("trans-\nformers and state-of-the-\nart", words) == "transformers and state-of-the-art"
    assert normalize_text("hyphen\u00ad\nation") == "hyphenation", "a soft hyphen at a break is always joined"


def test_normalize_keeps_capitalised_hyphenation() -> None:
    assert normalize_text("Jean-\nPaul") == "Jean-\nPaul"


def test_a_long_run_without_a_break_is_normalised_at_once() -> None:
    # A hex dump or a DNA sequence in a text file: the hyphen-break pattern once retried its word from every letter
    # of the run, time growing with the square of its length (80 KB: 36 s; a megabyte: most of an hour). Linear
    # now: 300 KB takes milliseconds, so the bound below only catches the quadratic behaviour, not a slow machine.
    run = "0123456789abcdef" * 20_000
    started = time.perf_counter()
    assert normalize_text(f"{run}-\nple and more") == f"{run}-ple and more"
    assert time.perf_counter() - started < 10


def test_pdf_one_record_per_page_with_page_numbers(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "two.pdf", ["Apples grow on trees.", "The capital of Freedonia is Fredville."])
    doc = load_document(path)
    assert doc.kind == "pdf" and doc.pages == 2
    assert [(r.page, r.text) for r in doc.records] == [
        (1, "Apples grow on trees."),
        (2, "The capital of Freedonia is Fredville."),
    ]


def test_pdf_pages_are_cut_into_the_sections_of_their_outline(tmp_path: Path) -> None:
    """The outline (bookmarks) names the section of every stretch of text: a page that carries on a section keeps
    its name, a section that starts mid-page starts a record there, and a title the text does not show is taken
    to start where the last one did. The XeTeX logo's reversed E reads as a plain E."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_font("sans", fname="/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    pdf.set_font("sans", size=11)

    def write(text: str) -> None:
        pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")

    pdf.add_page()
    pdf.start_section("1 Families")
    write("1 Families\nEach response distribution admits a variety of link functions, listed here for the binomial "
          "and gaussian families.")
    pdf.add_page()
    write("poisson identity, log, sqrt\nquasi logit, probit, cloglog, identity, inverse, log")
    pdf.start_section("The glm() function", level=1)
    write("1.1 The glm() function\nThe R function to fit a generalized linear model is glm(), typeset with "
          "X\u018eLATEX.")
    pdf.add_page()
    pdf.start_section("2 Not printed on the page")
    write("Nonlinear least squares and maximum likelihood models fit what glm() cannot fit.")
    path = tmp_path / "outline.pdf"
    pdf.output(str(path))

    doc = load_document(path)
    assert [(r.page, r.section, r.text.split("\n")[0]) for r in doc.records] == [
        (1, "1 Families", "1 Families"),
        (2, "1 Families", "poisson identity, log, sqrt"),
        (2, "The glm() function", "1.1 The glm() function"),
        (3, "2 Not printed on the page", "Nonlinear least squares and maximum likelihood models fit what glm() "
                                         "cannot fit."),
    ]
    assert "typeset with XELATEX" in doc.records[2].text
    second = doc.records[2]
    assert second.offset > 0 and doc.records[1].offset == 0


def test_a_pdf_pdfium_refuses_is_read_by_pypdf(tmp_path: Path) -> None:
    """PDFium looks for the %PDF header in the first 1,024 bytes; a file a server sent after blank lines is still a
    PDF, and pypdf reads it: same pages, same text, no warning."""
    seed = make_pdf(tmp_path / "seed.pdf", ["First page words here.", "Second page words."])
    padded = tmp_path / "padded.pdf"
    padded.write_bytes(b"\n" * 2000 + seed.read_bytes())
    import pypdfium2

    with pytest.raises(pypdfium2.PdfiumError):
        pypdfium2.PdfDocument(padded.read_bytes())
    doc = load_document(padded)
    assert [(r.page, r.text) for r in doc.records] == [(1, "First page words here."), (2, "Second page words.")]
    assert doc.pages == 2 and doc.warnings == []


def test_a_page_the_pdf_lists_but_does_not_hold_is_named_in_a_warning(tmp_path: Path) -> None:
    """A page tree that counts three pages over two: PDFium reads two and fails on the third, pypdf is asked for it
    and has none; the two pages are kept and the warning names the missing one."""
    seed = make_pdf(tmp_path / "seed.pdf", ["First page words here.", "Second page words."])
    damaged = tmp_path / "count.pdf"
    damaged.write_bytes(seed.read_bytes().replace(b"/Count 2", b"/Count 3"))
    doc = load_document(damaged)
    assert [(r.page, r.text) for r in doc.records] == [(1, "First page words here."), (2, "Second page words.")]
    assert "page 3: the file lists it but holds no such page" in doc.warnings


def test_pdf_encrypted_with_empty_password_opens(tmp_path: Path) -> None:
    path = make_encrypted_pdf(tmp_path / "open.pdf", ["Readable although encrypted."], password="")
    assert load_document(path).records[0].text == "Readable although encrypted."


@pytest.mark.parametrize(
    ("maker", "reason"),
    [
        (lambda p: make_encrypted_pdf(p, ["secret"], password="hunter2"), "password-protected"),
        (lambda p: make_truncated_pdf(p, ["x " * 2000, "y " * 200]), "truncated"),
        (lambda p: p.write_bytes(b"%PDF-1.7\n1 0 obj <</Type /Catalog>> garbage\n%%EOF\n"), "corrupt"),
        (lambda p: p.write_bytes(b"PK\x03\x04 this is a zip file renamed"), "not a PDF"),
        (lambda p: make_scanned_pdf(p, [""]), "not even by OCR"),
        (lambda p: p.write_bytes(b""), "empty"),
    ],
    ids=["password", "truncated", "corrupt", "not-pdf", "blank-scan", "empty"],
)
def test_bad_pdfs_fail_with_a_reason(tmp_path: Path, maker, reason: str) -> None:
    path = tmp_path / "bad.pdf"
    maker(path)
    with pytest.raises(LoadError, match=reason):
        load_document(path)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("naïve café".encode("utf-8"), "naïve café"),
        (b"\xef\xbb\xbf" + "naïve café".encode("utf-8"), "naïve café"),
        ("naïve café".encode("utf-16"), "naïve café"),
        ("Le garçon a mangé une crème brûlée à l'hôtel; déjà vu.".encode("cp1252"),
         "Le garçon a mangé une crème brûlée à l'hôtel; déjà vu."),
    ],
    ids=["utf8", "utf8-bom", "utf16-bom", "cp1252"],
)
def test_text_encodings(tmp_path: Path, data: bytes, expected: str) -> None:
    path = tmp_path / "note.txt"
    path.write_bytes(data)
    doc = load_document(path)
    assert doc.kind == "txt" and doc.records[0].text == expected and doc.records[0].page is None


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("blob.txt", bytes(range(256)) * 20, "binary"),
        ("empty.txt", b"", "empty"),
        ("blank.md", b"  \n\n\t ", "empty"),
        ("sheet.xlsx", b"PK\x03\x04", "unsupported file type"),
        ("README", b"hello", "unsupported file type"),
    ],
)
def test_bad_text_inputs(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(LoadError, match=reason):
        load_document(path)


def test_markdown_sections_keep_nearest_heading_and_offsets() -> None:
    text = "# Guide\n\nIntro text.\n\n## Install\n\nRun it.\n\n```\n# not a heading\n```\n\n## Use\n\nAsk."
    records = split_markdown_sections(text)
    assert [(r.section, r.text.splitlines()[0]) for r in records] == [
        ("Guide", "# Guide"),
        ("Install", "## Install"),
        ("Use", "## Use"),
    ]
    assert "# not a heading" in records[1].text
    for record in records:
        assert text[record.offset : record.offset + len(record.text)] == record.text


def test_pdf_text_layer_read_by_pdfium_mends_ligatures_and_hyphenation_and_keeps_page_numbers(tmp_path: Path) -> None:
    from fpdf import FPDF

    from ingest.loaders.pdf import pdfium_text

    font = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # a font with the ligature glyphs
    pdf = FPDF()
    pdf.add_font("sans", fname=str(font))
    pdf.set_font("sans", size=12)
    pdf.add_page()  # explicit line breaks: "exam-" ends a line, as a typesetter's hyphenation leaves it
    pdf.multi_cell(0, 8, "The \ufb01rst \ufb02ight is an exam-\nple of con-\nstruction by mean-\npooling.")
    pdf.add_page()
    pdf.multi_cell(0, 8, "A second example of construction.")
    path = tmp_path / "ligatures.pdf"
    pdf.output(str(path))

    assert [bool(text.strip()) for text in pdfium_text(path.read_bytes())] == [True, True], "PDFium reads both pages"
    doc = load_document(path)
    assert [(r.page, r.text) for r in doc.records] == [
        (1, "The first flight is an example of construction by mean-pooling."),
        (2, "A second example of construction."),
    ]
