"""Ingest speed and quality: the project against the LangChain tutorial pipeline, same files, each a whole process.

    .venv/bin/python bench/ingest.py [DATASET_DIR] [--runs 2] [--extra DIR]
    .venv/bin/python bench/ingest.py --real DIR [--runs 1]      (e.g. DIR = the set scripts/real_pdfs.sh gathers)

Corpus (in a temporary folder): every Markdown article of DATASET_DIR, plus the same article rendered to a
multi-page PDF with fpdf2, so each article is there twice, as X.md and X.pdf. ``--extra DIR`` adds the PDFs of
another folder (speed only: no questions are asked about them). ``--real DIR`` takes the PDFs of DIR alone (no
generated files, no questions: speed only, and no variants unless ``--variants`` names some).

Reference, as the LangChain RAG tutorial builds it, reproduced with the same libraries called directly (not
through langchain-community / langchain-huggingface, which are not installed): PyPDFLoader is pypdf page by page
(``page.extract_text()``), TextLoader reads the Markdown whole, ``RecursiveCharacterTextSplitter(chunk_size=1000,
chunk_overlap=200)``, all-MiniLM-L6-v2 through sentence-transformers (``HuggingFaceEmbeddings`` calls
``encode`` on all texts, batches of 32), a FAISS ``IndexFlatL2`` saved to disk (``save_local``).
Project: ``python -m ingest CORPUS --index DIR --json`` with the shipped settings, then again with each of
``--variants`` (one setting changed: parse ahead off, another embedding backend; speed only), then once more on
the first index, where every file is unchanged.

Both run as whole processes, alternately, ``--runs`` times: the seconds are wall time from start to exit
(interpreter, imports, model load, parsing, embedding, writing the index), and the peak memory is the resident size
of its largest process. Afterwards, untimed, the same questions go to both indexes: a hit is a chunk from the question's
article (its .md or its .pdf) that contains one of its answers, the dataset's rule with the file's extension
ignored. The project's ONNX model files are exported before the first run (once per machine, as any first ingest
would); the table says which embedding backend ran.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_SET = ROOT.parent / "shared" / "eval" / "xquad-dev"
FONTS = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
         "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"]


# --- the corpus ---------------------------------------------------------------------------------------------------


def render_pdf(markdown: Path, target: Path) -> int:
    """Write ``markdown`` as an A4 PDF (headings larger, paragraphs wrapped); returns its page count."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    font = next((f for f in FONTS if Path(f).is_file()), None)
    if font:
        pdf.add_font("body", fname=font)
    family = "body" if font else "helvetica"
    pdf.set_margins(20, 20, 20)
    pdf.add_page()
    for block in markdown.read_text(encoding="utf-8").split("\n\n"):
        text = block.strip()
        if not font:  # the core font knows Latin-1 only
            text = text.encode("latin-1", "replace").decode("latin-1")
        heading = text.startswith("#")
        pdf.set_font(family, size=15 if heading else 11)
        pdf.multi_cell(0, 8 if heading else 5.5, text.lstrip("# "))
        pdf.ln(3)
    pdf.output(str(target))
    return pdf.page_no()


def make_corpus(dataset: Path | None, folder: Path, extra: Path | None) -> tuple[int, int]:
    """Markdown and PDF of every article of ``dataset`` (and ``extra``'s PDFs) in ``folder``; returns (files, PDF
    pages)."""
    folder.mkdir(parents=True)
    pages = 0
    for article in sorted((dataset / "docs").glob("*.md")) if dataset else []:
        shutil.copy(article, folder / article.name)
        pages += render_pdf(article, folder / f"{article.stem}.pdf")
    if extra:
        from pypdf import PdfReader

        for pdf in sorted(extra.glob("*.pdf")):
            shutil.copy(pdf, folder / f"extra-{pdf.name}")
            pages += len(PdfReader(pdf).pages)
    return len(list(folder.iterdir())), pages


# --- the reference pipeline (run in its own process) ----------------------------------------------------------------


def reference_ingest(corpus: Path, out: Path) -> dict[str, float]:
    """The tutorial pipeline: load, split, embed, FAISS, save. Returns its chunk count and its own timings."""
    started = time.perf_counter()
    import faiss
    import numpy as np
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from pypdf import PdfReader
    from sentence_transformers import SentenceTransformer

    from rag.index.embedder import model_dir

    model = SentenceTransformer(str(model_dir()), device="cpu")
    loaded = time.perf_counter()
    pages: list[tuple[str, str]] = []  # (source, text): one "Document" per PDF page, one per text file
    for path in sorted(corpus.iterdir()):
        if path.suffix == ".pdf":
            pages += [(path.name, page.extract_text()) for page in PdfReader(path).pages]
        else:
            pages.append((path.name, path.read_text(encoding="utf-8")))
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    chunks = [(source, piece) for source, text in pages for piece in splitter.split_text(text)]
    parsed = time.perf_counter()
    vectors = model.encode([text for _, text in chunks], batch_size=32)
    embedded = time.perf_counter()
    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(np.asarray(vectors, dtype=np.float32))
    out.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(out / "index.faiss"))
    (out / "chunks.json").write_text(json.dumps(chunks))
    return {"chunks": len(chunks), "start_and_load": loaded - started, "parse": parsed - loaded,
            "embed": embedded - parsed}


def reference_hits(index_dir: Path, questions: list, k: int) -> list[int | None]:
    """Rank of the first hit for each question on the reference index (queries through the same model)."""
    import faiss
    from sentence_transformers import SentenceTransformer

    from rag.index.embedder import model_dir
    from rag.index.records import ChunkRecord
    from rag.retrieval.retriever import Hit

    chunks = json.loads((index_dir / "chunks.json").read_text())
    index = faiss.read_index(str(index_dir / "index.faiss"))
    model = SentenceTransformer(str(model_dir()), device="cpu")
    _, found = index.search(model.encode([q.question for q in questions], batch_size=64), k)
    return [first_hit(
        [Hit(rank, 0.0, ChunkRecord(int(i), chunks[i][0], None, None, 0, 0, 0, chunks[i][1]))
         for rank, i in enumerate(row, start=1) if i >= 0], question) for row, question in zip(found, questions)]


# --- the project ------------------------------------------------------------------------------------------------------


def embedding_floor(index_dir: Path) -> dict[str, float]:
    """The project's embedder alone on the texts the project embedded into ``index_dir`` (each chunk with its
    context line), in batches of similar length as ingest makes them: (start and model load, embedding) seconds.
    What is left of a whole ingest above the sum is reading, splitting and storing that embedding did not hide."""
    started = time.perf_counter()
    from rag.index.embedder import embedder_for
    from rag.index.records import indexed_text
    from rag.index.store import open_store
    from rag.settings import get_settings

    store = open_store(index_dir, create=False)
    chunks = store.chunks(sorted(store.dense_ids()))
    texts = [indexed_text(c.text, c.context) for c in chunks]
    embedder = embedder_for(index_dir)
    embedder.load()
    lengths = {text: embedder.count_tokens(text) for text in texts}
    loaded = time.perf_counter()
    ordered = sorted(set(texts), key=lambda text: lengths[text])
    batch = get_settings().embed_batch_size
    for start in range(0, len(ordered), batch):
        embedder.embed_batch(ordered[start : start + batch])
    return {"texts": len(ordered), "start_and_load": loaded - started, "embed": time.perf_counter() - loaded}



def project_hits(index_dir: Path, questions: list, k: int) -> list[int | None]:
    from rag.index.store import open_store
    from rag.retrieval.retriever import Retriever

    retriever = Retriever(open_store(index_dir))
    return [first_hit(retriever.search(q.question, k), q) for q in questions]


def first_hit(hits: list, question) -> int | None:  # noqa: ANN001 - a Question
    """The dataset's hit rule, with X.md and X.pdf both counting as the question's article."""
    from dataclasses import replace

    from rag.retrieval.evaluate import is_hit

    stem = Path(question.source).stem
    return next((h.rank for h in hits if Path(h.chunk.source).stem == stem
                 and is_hit(h, replace(question, source=h.chunk.source))), None)


# --- running and timing whole processes -------------------------------------------------------------------------------


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB of the largest process of its tree, stdout) of one whole process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    stdout = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited with {process.returncode}")
    return seconds, usage.ru_maxrss / 1024, stdout


def ingest_command(corpus: Path, index: Path) -> list[str]:
    return [sys.executable, "-m", "ingest", str(corpus), "--index", str(index), "--json"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_SET)
    p.add_argument("--runs", type=int, default=2, help="alternating runs of each pipeline (default 2)")
    p.add_argument("--extra", type=Path, help="a folder of more PDFs to ingest (speed only)")
    p.add_argument("--real", type=Path, metavar="DIR", help="only the PDFs of DIR (speed only, no questions)")
    p.add_argument("--variants", default=None,
                   help="the project again with these settings (speed only; comma-separated; '' for none; default "
                        "RAG_PARSE_AHEAD=false,RAG_EMBED_BACKEND=onnx,RAG_EMBED_BACKEND=torch, none with --real)")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--reference", nargs=2, type=Path, metavar=("CORPUS", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--floor", type=Path, metavar="INDEX", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.reference:
        print(json.dumps(reference_ingest(*args.reference)))
        return
    if args.floor:
        print(json.dumps(embedding_floor(args.floor)))
        return

    from rag.index.embedder import OnnxEmbedder, get_embedder
    from rag.retrieval.evaluate import load_questions

    embedder = get_embedder()
    for variant in (OnnxEmbedder(), OnnxEmbedder(int8=True)):
        variant.model_file()  # exported (once per machine, as any first ingest would), not part of a timing
    if args.variants is None:
        args.variants = "" if args.real else "RAG_PARSE_AHEAD=false,RAG_EMBED_BACKEND=onnx,RAG_EMBED_BACKEND=torch"
    questions = [] if args.real else load_questions(args.dataset)
    variants = {"reference": None, "project": {}} | {
        f"project, {v}": dict([v.split("=", 1)]) for v in args.variants.split(",") if v}
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        corpus = Path(tmp) / "corpus"
        files, pages = make_corpus(None if args.real else args.dataset, corpus, args.real or args.extra)
        breakdown = []
        for run in range(args.runs):
            for name, env in variants.items():
                out_dir = Path(tmp) / f"{name}-{run}"
                if env is None:
                    seconds, rss, out = timed([sys.executable, __file__, "--reference", str(corpus), str(out_dir)])
                    breakdown.append(json.loads(out))
                    results[name].append((seconds, rss, breakdown[-1]["chunks"]))
                else:
                    seconds, rss, out = timed(ingest_command(corpus, out_dir), env)
                    results[name].append((seconds, rss, json.loads(out)["chunks"]))
        again = [timed(ingest_command(corpus, Path(tmp) / "project-0")) for _ in range(args.runs)]
        floors = [timed([sys.executable, __file__, "--floor", str(Path(tmp) / "project-0")]) for _ in range(args.runs)]
        ranks = {"reference": reference_hits(Path(tmp) / "reference-0", questions, args.k),
                 "project": project_hits(Path(tmp) / "project-0", questions, args.k)} if questions else {}
    what = (f"the PDFs of {args.real}" if args.real else
            f"{len(list((args.dataset / 'docs').glob('*.md')))} articles as .md and .pdf"
            + (f", plus {args.extra}" if args.extra else ""))
    print(f"{files} files ({what}, {pages} PDF pages), {len(questions)} questions; "
          f"project's embedding backend: {embedder.backend} ({embedder.name}); {args.runs} runs each, in turn; "
          "median shown")
    print(f"| pipeline (whole process) | seconds (runs) | files/s | chunks | chunks/s | peak RSS MB | hit@1 | hit@{args.k} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    medians = {}
    for name, runs in results.items():
        seconds = medians[name] = statistics.median(r[0] for r in runs)
        chunks = runs[0][2]
        r = ranks.get(name)
        hits = f"{sum(x == 1 for x in r) / len(r):.3f} | {sum(x is not None for x in r) / len(r):.3f}" if r else "- | -"
        label = {"reference": "reference: LangChain tutorial (pypdf, 1000/200 chars, sentence-transformers, FAISS)",
                 "project": f"project: python -m ingest ({embedder.backend})"}.get(name, name)
        print(f"| {label} | {seconds:.1f} ({', '.join(f'{x[0]:.1f}' for x in runs)}) | {files / seconds:.2f} | "
              f"{chunks} | {chunks / seconds:.1f} | {max(x[1] for x in runs):.0f} | {hits} |")
    unchanged = [json.loads(out) for _, _, out in again]
    print(f"| project, run again: {unchanged[0]['unchanged']} files unchanged | "
          f"{statistics.median(x[0] for x in again):.1f} ({', '.join(f'{x[0]:.1f}' for x in again)}) | | 0 | | "
          f"{max(x[1] for x in again):.0f} | | |")
    print(f"speed-up: {medians['reference'] / medians['project']:.2f}x the reference's wall time; the unchanged re-run "
          f"spends {', '.join(str(u['seconds']) for u in unchanged)} s in ingest itself")
    floor = [json.loads(out) | {"wall": wall} for wall, _, out in floors]
    print(f"embedding floor (the project's model alone on its {floor[0]['texts']} distinct texts, whole process): "
          + "; ".join(f"{f['wall']:.1f} s wall, of which start+load {f['start_and_load']:.1f}, embed {f['embed']:.1f}"
                      for f in floor)
          + f"; the whole ingest is {medians['project'] / statistics.median(f['wall'] for f in floor):.2f}x that")
    print("reference's own split of its time (s): " + "; ".join(
        f"start+load {b['start_and_load']:.1f}, parse {b['parse']:.1f}, embed {b['embed']:.1f}" for b in breakdown))


if __name__ == "__main__":
    main()
