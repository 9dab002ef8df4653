"""PDF text layers: pypdf (pure Python) against PDFium (pypdfium2, C++) on the same real PDFs, in one process.

    .venv/bin/python bench/pdf_text.py [DIR]                  speed and agreement, one row per file
    .venv/bin/python bench/pdf_text.py DIR --show FILE PAGE    both texts of one page, one after the other

DIR defaults to the set scripts/real_pdfs.sh gathers (~/.cache/rag-real-pdfs/pdfs). Each library reads every page
of every file once (each file opened from bytes in memory, so disk time is out); the table gives the seconds, the
pages a second, and how far the texts differ: the share of words (whitespace-separated, after the loader's
normalisation: hyphenation joined, ligatures expanded) found by one library and not the other, and the count of
ligature characters (U+FB00-FB06) each leaves in its text.
"""

from __future__ import annotations

import argparse
import collections
import io
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.normalize import document_words, normalize_text  # noqa: E402

DEFAULT_DIR = Path.home() / ".cache" / "rag-real-pdfs" / "pdfs"
LIGATURES = {chr(c) for c in range(0xFB00, 0xFB07)}


def pypdf_pages(data: bytes) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() or "" for page in PdfReader(io.BytesIO(data), strict=False).pages]


def pdfium_pages(data: bytes) -> list[str]:
    from ingest.loaders.pdf import pdfium_text

    return pdfium_text(data)


def normalized(pages: list[str]) -> list[str]:
    words = document_words(pages)
    return [normalize_text(text, words) for text in pages]


def differ(a: list[str], b: list[str]) -> float:
    """Words of ``a`` not in ``b`` and of ``b`` not in ``a`` (as multisets), over the words of both."""
    left = collections.Counter(" ".join(a).split())
    right = collections.Counter(" ".join(b).split())
    total = sum(left.values()) + sum(right.values())
    return (sum((left - right).values()) + sum((right - left).values())) / max(total, 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    p.add_argument("--show", nargs=2, metavar=("FILE", "PAGE"))
    args = p.parse_args()
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    if args.show:
        data = (args.dir / args.show[0]).read_bytes()
        page = int(args.show[1]) - 1
        for name, read in (("pypdf", pypdf_pages), ("pypdfium2", pdfium_pages)):
            print(f"===== {name}, raw =====\n{read(data)[page]}\n")
        return 0
    print("| file | pages | pypdf s | pypdfium2 s | speed-up | words differing | ligatures left: pypdf, pdfium |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    totals = [0, 0.0, 0.0]
    for path in sorted(args.dir.glob("*.pdf")):
        data = path.read_bytes()
        started = time.perf_counter()
        slow = pypdf_pages(data)
        middle = time.perf_counter()
        fast = pdfium_pages(data)
        done = time.perf_counter()
        ligatures = [sum(ch in LIGATURES for ch in "".join(texts)) for texts in (slow, fast)]
        totals = [totals[0] + len(fast), totals[1] + middle - started, totals[2] + done - middle]
        print(f"| {path.name} | {len(fast)} | {middle - started:.2f} | {done - middle:.2f} | "
              f"{(middle - started) / max(done - middle, 1e-9):.1f}x | {differ(normalized(slow), normalized(fast)):.3f} | "
              f"{ligatures[0]}, {ligatures[1]} |")
    print(f"| **all** | {totals[0]} | {totals[1]:.1f} | {totals[2]:.1f} | {totals[1] / totals[2]:.1f}x | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
