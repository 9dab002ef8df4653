"""The documents people have, end to end: a folder of Word, PowerPoint, web and scanned files through the command
line, each fact found from the right file and page or slide; and a paper's title indexed with all its pages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fpdf import FPDF

from ingest.pipeline import Ingestor
from rag.index.embedder import Embedder
from rag.index.store import Store
from rag.retrieval.retriever import Retriever
from tests.documents import make_docx, make_html, make_pptx
from tests.pdfs import make_scanned_pdf

FACTS = [  # question, file, page or slide, words of the answer
    ("What is the door code of the north vault?", "vault.docx", None, "4711"),
    ("Which launch code did the Aurora rocket use?", "aurora-deck.pptx", 2, "7429"),
    ("Who bought the museum's blue whale skeleton?", "museum-news.html", None, "Oslo"),
    ("How much can the harbour crane lift?", "harbour-scan.pdf", 2, "forty tonnes"),
]


def _everyday_folder(folder: Path) -> Path:
    folder.mkdir()
    make_docx(folder / "vault.docx", [
        ("heading1", "Security handbook"),
        ("p", "Visitors sign the register at the front desk and wear a badge at all times."),
        ("heading2", "Vault doors"),
        ("table", [["Vault", "Door code", "Keeper"], ["North vault", "4711", "Ada Lind"],
                   ["South vault", "9932", "Tom Berg"]]),
        ("p", "Codes change every spring."),
    ])
    make_pptx(folder / "aurora-deck.pptx", [
        {"title": "Aurora project review", "body": "Budget, team and schedule of the observatory."},
        {"title": "Launch", "body": "The Aurora rocket lifted off from Kiruna in March.",
         "table": "Launch code|7429", "notes": "Thank the ground crew."},
        {"title": "Next steps", "body": "A second flight is planned for the autumn."},
    ])
    make_html(folder / "museum-news.html", "Museum news", (
        "<h1>The whale leaves town</h1><p>After forty years in the great hall, the museum's blue whale skeleton "
        "was sold to the natural history museum of Oslo, which will show it from next summer.</p>"
        "<h2>What comes next</h2><p>The great hall will host a travelling exhibition about deep-sea fish.</p>"
    ), nav="Whale watching · Opening hours · Tickets · Shop")
    make_scanned_pdf(folder / "harbour-scan.pdf", [
        "Harbour authority. Annual report on the docks, the ferries and the pilots.",
        "Equipment. The new harbour crane lifts forty tonnes at a time and was installed in May.",
    ])
    return folder


@pytest.mark.slow
def test_a_folder_of_everyday_documents_ingests_and_each_fact_is_found(tmp_path: Path, run_cli) -> None:
    folder = _everyday_folder(tmp_path / "docs")
    index = str(tmp_path / "index")
    result = run_cli("ingest", str(folder), "--index", index, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["added"], report["failed"], report["ocr_pages"]) == (4, [], 2)
    assert {(Path(n["path"]).name, n["note"]) for n in report["notes"]} == {
        ("harbour-scan.pdf", "2 pages read by OCR (1, 2)")}
    assert "2 pages read by OCR" in result.stderr

    for question, source, page, answer in FACTS:
        search = run_cli("rag.search", question, "-k", "3", "--index", index, "--json")
        hits = json.loads(search.stdout)
        assert search.returncode == 0 and len(hits) == 3, search.stderr
        found = [(h["source"], h["page"]) for h in hits if answer in h["text"]]
        assert (source, page) in found, (question, [(h["source"], h["page"], h["text"][:80]) for h in hits])

    script = run_cli("rag.search", "analytics cookie consent newsletter copyright", "-k", "5", "--index", index,
                     "--json")
    leaked = [h for h in json.loads(script.stdout) if "cookie" in h["text"] or "Copyright" in h["text"]]
    assert not leaked, "the page's script, banner and footer were not indexed"


def _paper(path: Path, title: str, pages: list[str]) -> Path:
    """A paper: its title in large type on page 1 (as LaTeX sets it), body text in small type."""
    pdf = FPDF()
    for number, text in enumerate(pages, start=1):
        pdf.add_page()
        if number == 1:
            pdf.set_font("helvetica", size=20)
            pdf.multi_cell(0, 10, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("helvetica", size=10)
        pdf.multi_cell(0, 6, text)
    pdf.output(str(path))
    return path


def test_every_page_of_a_pdf_is_indexed_with_its_title(tmp_path: Path, store: Store, embedder: Embedder) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    results = "Results. The experiments use {n} collections of web pages and report gains on every one of them."
    papers = [
        ("hyde.pdf", "HyDE: Precise Zero-Shot Dense Retrieval", "We propose Hypothetical Document Embeddings (HyDE): "
         "an instruction-following model writes a hypothetical answer, which is embedded and searched.", "twelve"),
        ("colbert.pdf", "ColBERT: Efficient Passage Search", "ColBERT encodes queries and passages separately and "
         "lets their token vectors interact late, at search time.", "nine"),
        ("splade.pdf", "SPLADE: Sparse Lexical and Expansion Model", "SPLADE learns sparse term weights with "
         "expansion terms, so an inverted index can serve it.", "seven"),
    ]
    for name, title, abstract, n in papers:
        _paper(docs / name, title, [f"Abstract. {abstract}", "Method. Passages are split into short chunks.",
                                     results.format(n=n)])
    report = Ingestor(store, embedder=embedder).ingest([docs])
    assert sorted(report.added) == ["colbert.pdf", "hyde.pdf", "splade.pdf"] and not report.failed

    retriever = Retriever(store, embedder=embedder)
    for name, title, _, n in papers:  # without the titles these three pages tie, and one in three comes first
        top = retriever.search(f"How many collections do the {title.split(':')[0]} experiments use?", 3)[0]
        assert (top.chunk.source, top.chunk.page) == (name, 3) and n in top.chunk.text, (
            "the results page never names its paper: only the title indexed with it tells the three apart")
        assert top.chunk.context == title
    first = retriever.search("What does HyDE stand for?", 1)[0]
    assert (first.chunk.source, first.chunk.page) == ("hyde.pdf", 1)
