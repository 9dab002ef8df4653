"""Word, PowerPoint, web pages and scanned PDFs, on real files written by the tests (python-docx, python-pptx,
HTML, Pillow pictures read back by the real OCR engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.loaders import LoadError, load_document
from tests.documents import encrypt_office_file, make_docx, make_html, make_pptx
from tests.pdfs import make_partly_scanned_pdf, make_pdf, make_scanned_pdf


def test_docx_headings_become_sections_and_tables_stay_rows(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "vault.docx", [
        ("heading1", "Vault procedures"),
        ("p", "Every visitor signs the register."),
        ("heading2", "Door codes"),
        ("table", [["Door", "Code"], ["North vault", "4711"], ["South vault", "9932"]]),
        ("p", "Codes change every spring."),
    ], title="Vault handbook")
    doc = load_document(path)
    assert (doc.kind, doc.title, doc.pages) == ("docx", "Vault handbook", None)
    assert [r.section for r in doc.records] == ["Vault procedures", "Door codes"]
    codes = doc.records[1].text
    assert "North vault | 4711\nSouth vault | 9932" in codes, "each table row is one line, its cells in order"
    assert codes.index("Door | Code") < codes.index("North vault") < codes.index("Codes change"), "document order"


def test_pptx_one_record_per_slide_with_title_and_speaker_notes(tmp_path: Path) -> None:
    path = make_pptx(tmp_path / "deck.pptx", [
        {"title": "Aurora project", "body": "Status of the observatory"},
        {"title": "Launch", "body": "The rocket lifted off from Kiruna.", "table": "Launch code|7429",
         "notes": "Mention the weather delay."},
        {"title": ""},  # an empty slide gives no record but still counts
        {"title": "Thanks"},
    ])
    doc = load_document(path)
    assert (doc.kind, doc.pages) == ("pptx", 4)
    assert [(r.page, r.section) for r in doc.records] == [(1, "Aurora project"), (2, "Launch"), (4, "Thanks")]
    launch = doc.records[1].text
    assert launch.startswith("Launch\n") and "Launch code | 7429" in launch
    assert launch.endswith("Speaker notes: Mention the weather delay.")


def test_html_keeps_the_article_and_drops_navigation_scripts_and_styles(tmp_path: Path) -> None:
    path = make_html(tmp_path / "notes.html", "Aurora field notes", (
        "<h1>The expedition</h1><p>The Aurora expedition left Kiruna in March with twelve members and three "
        "sled teams.</p><h2>Results</h2><p>The observatory recorded the <b>brightest aurora</b> of the <em>decade"
        "</em> on the ninth night.</p><table><tr><th>Item</th><th>Weight</th></tr>"
        "<tr><td>Radio</td><td>4 kg</td></tr></table>"
    ))
    doc = load_document(path)
    text = "\n".join(r.text for r in doc.records)
    assert doc.kind == "html" and doc.title
    assert [r.section for r in doc.records] == ["The expedition", "Results"]
    assert "brightest aurora of the decade" in text, "emphasis marks are not part of the text"
    assert "Radio | 4 kg" in text
    for boilerplate in ("Products", "analytics", "cookie", "float", "Copyright", "querySelectorAll", "|---"):
        assert boilerplate not in text, boilerplate


def test_htm_suffix_is_read_as_a_web_page(tmp_path: Path) -> None:
    path = make_html(tmp_path / "page.htm", "Ferry", "<p>The ferry to the island leaves at seven every morning "
                     "from the north pier, and the last one returns at nine in the evening.</p>")
    assert "leaves at seven" in load_document(path).records[0].text


def test_a_page_with_a_short_article_or_none_is_not_filled_with_its_menu(tmp_path: Path) -> None:
    short = load_document(make_html(tmp_path / "hours.html", "Hours", "<p>Open daily.</p>"))
    assert [r.text for r in short.records] == ["Open daily."], "not the menu and banner around it"
    with pytest.raises(LoadError, match="no article text"):
        load_document(make_html(tmp_path / "empty.html", "Empty", ""))
    with pytest.raises(LoadError, match="no article text"):  # found by the fuzz campaign: headings alone
        load_document(make_html(tmp_path / "headings.html", "Headings", "<h1>Contents</h1><h2>Part one</h2>"))


def test_scanned_pdf_is_read_by_ocr_with_page_numbers(tmp_path: Path) -> None:
    path = make_scanned_pdf(tmp_path / "scan.pdf", [
        "Harbour report. The weather in Kiruna was cold all week.",
        "The harbour crane lifts forty tonnes at a time.",
    ])
    doc = load_document(path)
    assert doc.pages == 2 and doc.ocr_pages == [1, 2]
    assert [r.page for r in doc.records] == [1, 2]
    assert "crane lifts forty tonnes" in doc.records[1].text
    assert doc.notes[0] == "2 pages read by OCR (1, 2)"


def test_partly_scanned_pdf_sends_only_pages_without_text_to_ocr(tmp_path: Path) -> None:
    path = make_partly_scanned_pdf(tmp_path / "mixed.pdf", [
        ("Typed page one about the orchard and its apples.", False),
        ("Scanned page two: the lighthouse lamp turns every twelve seconds.", True),
        ("Typed page three about the winter.", False),
    ])
    doc = load_document(path)
    assert doc.ocr_pages == [2]
    assert [r.page for r in doc.records] == [1, 2, 3]
    assert "lamp turns every twelve seconds" in doc.records[1].text
    assert doc.records[0].text == "Typed page one about the orchard and its apples."


def test_pdf_title_from_the_largest_type_on_page_one(tmp_path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=22)
    with pdf.rotation(90, 10, 200):  # arXiv's stamp: set sideways in the margin, in larger type than the title
        pdf.text(10, 200, "arXiv:2212.10496v1 [cs.IR] 20 Dec 2022")
    pdf.set_font("helvetica", size=18)
    pdf.set_xy(20, 20)
    pdf.multi_cell(0, 9, "Precise Zero-Shot Dense Retrieval without Relevance Labels", new_x="LMARGIN",
                   new_y="NEXT")
    pdf.set_font("helvetica", size=10)
    pdf.multi_cell(0, 6, "Abstract. We propose to pivot through Hypothetical Document Embeddings (HyDE). " * 3)
    pdf.add_page()
    pdf.multi_cell(0, 6, "Experiments on web search show large gains.")
    pdf.output(str(tmp_path / "paper.pdf"))
    doc = load_document(tmp_path / "paper.pdf")
    assert doc.title == "Precise Zero-Shot Dense Retrieval without Relevance Labels"


def test_pdf_title_from_metadata_wins_and_plain_pages_have_none(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    plain = make_pdf(tmp_path / "plain.pdf", ["All text on this page has one size.", "So has this one."])
    assert load_document(plain).title is None, "no text stands out, so there is no heading to take"
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.add_metadata({"/Title": "Orchard almanac"})
    writer.write(tmp_path / "titled.pdf")
    assert load_document(tmp_path / "titled.pdf").title == "Orchard almanac"
    writer.add_metadata({"/Title": "Microsoft Word - draft3.docx"})
    writer.write(tmp_path / "junk.pdf")
    assert load_document(tmp_path / "junk.pdf").title is None, "an editor's placeholder is not a title"


def test_pdf_hyphen_of_a_compound_is_kept_across_a_line_break(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "paper.pdf", [
        "We embed sentences by mean-\npooling the token vectors, and every exam-\nple is short.",
        "Each example is a sentence.",
    ])
    text = load_document(path).records[0].text
    assert "mean-pooling" in text and "example is short" in text


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("locked.docx", lambda p: encrypt_office_file(make_docx(p, [("p", "secret")]), "hunter2"),
         "Word file is password-protected"),
        ("locked.pptx", lambda p: encrypt_office_file(make_pptx(p, [{"title": "secret"}]), "hunter2"),
         "PowerPoint file is password-protected"),
        ("cut.docx", lambda p: p.write_bytes(make_docx(p, [("p", "words " * 500)]).read_bytes()[:4000]),
         "Word file is corrupt or incomplete"),
        ("renamed.pptx", lambda p: p.write_bytes(b"%PDF-1.4 not a presentation"), "not a PowerPoint file"),
        ("old.docx", lambda p: p.write_bytes(encrypt_office_file(make_docx(p, [("p", "x")]), "pw").read_bytes()
                                             .replace(b"E\x00n\x00c\x00r\x00y\x00p\x00t\x00i\x00o\x00n",
                                                      b"X\x00n\x00c\x00r\x00y\x00p\x00t\x00i\x00o\x00n")),
         "old binary Word file"),
        ("blank.pptx", lambda p: make_pptx(p, [{"title": ""}]), "no text on any of the 1 slide"),
        ("empty.docx", lambda p: make_docx(p, []), "Word file holds no text"),
        ("bare.html", lambda p: p.write_text("<html><head><script>var a = 1;</script></head><body></body></html>"),
         "no article text"),
    ],
)
def test_bad_files_of_the_new_types_fail_with_a_reason(tmp_path: Path, name: str, make, reason: str) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(LoadError, match=reason):
        load_document(path)
