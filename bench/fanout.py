"""Fan-out ingest against one process on a folder with scanned pages: whole processes taking turns.

    .venv/bin/python bench/fanout.py [--runs 1] [--workers 2] [--dpi 150] [--scanned 6] [--text 6] [--unshared]

Corpus (in a temporary folder): ``--scanned`` PDFs of 2 image-only pages each (paragraphs of the xquad-dev
articles typeset on A4 and saved by Pillow at ``--dpi``, as bench/ocr.py makes them: 12 pages by default), and
``--text`` text PDFs (other articles, rendered by fpdf2 as bench/ingest.py does). Each round runs ``python -m ingest CORPUS --index FRESH --json``
and the same with ``--workers N`` (a local Dask cluster started and stopped by the command), in turns, the order
swapped every round, each into a fresh index. Seconds are wall time from start to exit (interpreter, imports, model
load, the cluster's start, OCR, embedding, writing); CPU seconds are those of the process and all its children;
the load average is printed beside them (other jobs share the cores). ``--unshared`` adds the workers with a
thread per core each for the model and OCR (ONNX Runtime's default; the local cluster shares the cores out).
Then the indexes are compared: the same documents, the same chunks, vectors within 1e-5.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import DEFAULT_SET, ingest_command, render_pdf, timed  # noqa: E402
from bench.ocr import as_pdf, page_texts, scanned_page  # noqa: E402

PAGES_PER_FILE = 2


def make_corpus(folder: Path, docs: Path, dpi: int, scanned: int, text: int) -> None:
    folder.mkdir(parents=True)
    texts = page_texts(docs, scanned * PAGES_PER_FILE)
    if len(texts) < scanned * PAGES_PER_FILE:
        raise SystemExit(f"{docs}: not enough articles for {scanned * PAGES_PER_FILE} pages (--dataset DIR)")
    for n in range(scanned):
        pages = texts[n * PAGES_PER_FILE : (n + 1) * PAGES_PER_FILE]
        pictures = [scanned_page(page, seed=n + i, dpi=dpi, degraded=False) for i, page in enumerate(pages)]
        (folder / f"scan-{n + 1:02d}.pdf").write_bytes(as_pdf(pictures, dpi))
    for article in sorted(docs.glob("*.md"))[scanned * PAGES_PER_FILE :][:text]:
        render_pdf(article, folder / f"{article.stem}.pdf")


def cpu_seconds() -> float:
    """User and system seconds of this process's finished children (and theirs) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def index_contents(index: Path) -> tuple[list[tuple], list[tuple], np.ndarray]:
    """Documents, chunks by document and position (files are stored in the order they finish), and their vectors."""
    from rag.index.records import indexed_text, sha256_text
    from rag.index.store import open_store

    store = open_store(index, create=False)
    try:
        documents = sorted((d.name, d.sha256, d.pages, d.chunks) for d in store.documents())
        probe = np.ones(store.dim, dtype=np.float32) / np.sqrt(store.dim)  # every chunk: exact search at this size
        ids = [i for i, _ in store.search_dense(probe, store.chunk_count())]
        rows = sorted(store.chunks(ids), key=lambda c: (c.source, c.ordinal))
        hashes = [sha256_text(indexed_text(c.text, c.context)) for c in rows]
        vectors = store.vectors_by_sha(hashes)
        chunks = [(c.source, c.ordinal, c.page, c.text) for c in rows]
        return documents, chunks, np.vstack([vectors[h] for h in hashes])
    finally:
        store.close()


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", type=Path, default=DEFAULT_SET)
    p.add_argument("--runs", type=int, default=1, help="rounds of both (default 1)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--dpi", type=int, default=150, help="scan resolution of the image-only pages (default 150)")
    p.add_argument("--scanned", type=int, default=6, help=f"scanned PDFs of {PAGES_PER_FILE} pages (default 6)")
    p.add_argument("--text", type=int, default=6, help="text PDFs (default 6)")
    p.add_argument("--unshared", action="store_true", help="also the workers with a thread per core each")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        corpus = Path(tmp) / "corpus"
        make_corpus(corpus, args.dataset / "docs", args.dpi, args.scanned, args.text)
        print(f"corpus: {args.scanned} scanned PDFs ({args.scanned * PAGES_PER_FILE} image-only pages at {args.dpi} "
              f"dpi) and {args.text} text PDFs; {os.cpu_count()} cores", flush=True)
        print(f"before: {uptime()}", flush=True)
        fan = ["--workers", str(args.workers)]
        cores = str(os.cpu_count() or 1)
        variants = {"one process": ([], {}), f"--workers {args.workers}": (fan, {})}
        if args.unshared:
            variants[f"--workers {args.workers}, a thread per core each"] = (
                fan, {"RAG_EMBED_THREADS": cores, "RAG_OCR_THREADS": cores})
        sides: dict[str, list] = {side: [] for side in variants}
        for run in range(args.runs):
            order = list(sides) if run % 2 == 0 else list(sides)[::-1]
            for side in order:
                index = Path(tmp) / f"{side.replace(' ', '_')}-{run}"
                options, env = variants[side]
                cpu = cpu_seconds()
                seconds, peak_mb, _ = timed(ingest_command(corpus, index) + options, env)
                sides[side].append((seconds, cpu_seconds() - cpu, peak_mb, index))
                print(f"  run {run + 1}, {side}: {seconds:.1f} s, {sides[side][-1][1]:.1f} CPU s", flush=True)
        print(f"after: {uptime()}")
        print("\n| ingest (whole process) | seconds (median) | CPU seconds | largest process MB | runs |")
        print("|---|---:|---:|---:|---|")
        for side, runs in sides.items():
            print(f"| {side} | {statistics.median(r[0] for r in runs):.1f} | "
                  f"{statistics.median(r[1] for r in runs):.1f} | {max(r[2] for r in runs):.0f} | "
                  f"{', '.join(f'{r[0]:.1f}' for r in runs)} |")
        one, fanned = (statistics.median(r[0] for r in sides[side]) for side in list(sides)[:2])
        print(f"\nratio one process / --workers {args.workers}: {one / fanned:.2f}")
        reference = index_contents(sides["one process"][0][3])
        for side, runs in sides.items():
            for run in runs:
                documents, chunks, vectors = index_contents(run[3])
                same = documents == reference[0] and chunks == reference[1] and np.allclose(vectors, reference[2],
                                                                                            atol=1e-5)
                if not same:
                    print(f"DIFFERENT: {side} ({run[3].name}) does not hold the same chunks")
                    return 1
        print(f"same documents ({len(reference[0])}), chunks ({len(reference[1])}) and vectors in every index")
    return 0


if __name__ == "__main__":
    sys.exit(main())
