"""OCR benchmark: RapidOCR (shipped) against Tesseract (the classic engine, Debian's tesseract-ocr) on the same
scanned pages, in one run.

    .venv/bin/python bench/ocr.py [--pages 6] [--dpi 200 300]

Pages: real text (paragraphs of the xquad-dev Wikipedia articles) typeset at 11 pt on A4 at 300 dpi, then made to
look scanned (a 0.4 degree skew, a little blur and noise, JPEG at quality 70), saved by Pillow as an image-only
PDF. Each engine reads each page as the loader sees it: the page drawn by PDFium at the given resolution.
Character accuracy is 1 - (edit distance / length of the true text), both with their whitespace collapsed. Time is
per page (median), model loading excluded, on this machine's 2 cores (onnxruntime and Tesseract each use both):
wall clock, and CPU seconds (this process's threads, or the Tesseract child's), which other jobs sharing the cores
disturb far less than the wall clock.
Tesseract rows appear only where the ``tesseract`` command is installed (``apt-get install tesseract-ocr``).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.loaders.ocr import _engine, read_image  # noqa: E402

DEFAULT_DOCS = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "xquad-dev" / "docs"
SERIF = Path("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf")


def page_texts(docs: Path, pages: int) -> list[str]:
    """About 1,800 characters of running text per page, from different articles."""
    out: list[str] = []
    for path in sorted(docs.glob("*.md"))[:pages]:
        paragraphs = [p for p in path.read_text().split("\n\n") if p.strip() and not p.startswith("#")]
        text = ""
        for paragraph in paragraphs:
            if len(text) > 1500:
                break
            text += " ".join(paragraph.split()) + "\n"
        out.append(text.strip())
    return out


def scanned_page(text: str, seed: int) -> Image.Image:
    """The text typeset on an A4 page at 300 dpi, then skewed, blurred, speckled and JPEG-compressed."""
    font = ImageFont.truetype(str(SERIF), 46) if SERIF.exists() else ImageFont.load_default(size=46)
    page = Image.new("L", (2480, 3508), 255)
    draw = ImageDraw.Draw(page)
    y = 250
    for paragraph in text.split("\n"):
        for line in textwrap.wrap(paragraph, width=78):
            draw.text((250, y), line, font=font, fill=0)
            y += 66
        y += 40
    rng = random.Random(seed)
    page = page.rotate(rng.uniform(-0.4, 0.4), fillcolor=255, resample=Image.Resampling.BICUBIC)
    page = page.filter(ImageFilter.GaussianBlur(0.8))
    noise = np.random.default_rng(seed).normal(0, 12, (page.height, page.width))
    page = Image.fromarray(np.clip(np.asarray(page, dtype=float) + noise, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    page.save(buffer, "JPEG", quality=70)
    return Image.open(buffer)


def rendered(pdf: Path, dpi: int) -> list[Image.Image]:
    import pypdfium2

    document = pypdfium2.PdfDocument(str(pdf))
    images = [document[i].render(scale=dpi / 72, grayscale=True).to_pil() for i in range(len(document))]
    document.close()
    return images


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, one numpy row at a time (insertions as a running minimum)."""
    if not a or not b:
        return max(len(a), len(b))
    target = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    steps = np.arange(len(b) + 1)
    row = steps.copy()
    for i, char in enumerate(a, start=1):
        substitute = row[:-1] + (target != ord(char))
        delete = row[1:] + 1
        new = np.empty_like(row)
        new[0] = i
        new[1:] = np.minimum(substitute, delete)
        row = np.minimum.accumulate(new - steps) + steps
    return int(row[-1])


def accuracy(found: str, truth: str) -> float:
    found, truth = " ".join(found.split()), " ".join(truth.split())
    return 1 - edit_distance(found, truth) / len(truth)


def tesseract(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    done = subprocess.run(["tesseract", "stdin", "stdout", "-l", "eng", "--psm", "3"], input=buffer.getvalue(),
                          capture_output=True, check=True)
    return done.stdout.decode()


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished children (Tesseract)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def measure(name: str, read, images: list[Image.Image], truths: list[str]) -> tuple[str, float, float, float, float]:
    scores, wall, cpu = [], [], []
    for image, truth in zip(images, truths, strict=True):
        started, started_cpu = time.perf_counter(), cpu_seconds()
        found = read(image)
        wall.append(time.perf_counter() - started)
        cpu.append(cpu_seconds() - started_cpu)
        scores.append(accuracy(found, truth))
    return name, float(np.mean(scores)), float(min(scores)), float(np.median(wall)), float(np.median(cpu))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=Path, default=DEFAULT_DOCS)
    p.add_argument("--pages", type=int, default=6)
    p.add_argument("--dpi", type=int, nargs="+", default=[200, 300])
    args = p.parse_args()

    truths = page_texts(args.docs, args.pages)
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "scan.pdf"
        pictures = [scanned_page(t, seed) for seed, t in enumerate(truths)]
        pictures[0].save(pdf, save_all=True, append_images=pictures[1:], resolution=300)
        engine = _engine()
        read_image(pictures[0].crop((0, 0, 1200, 600)), engine)  # warm up: the first run builds onnxruntime's plans
        rows = []
        for dpi in args.dpi:
            images = rendered(pdf, dpi)
            rows.append(measure(f"shipped: RapidOCR (PP-OCRv4), {dpi} dpi", lambda im: read_image(im, engine),
                                images, truths))
            if shutil.which("tesseract"):
                rows.append(measure(f"reference: Tesseract 5 (eng), {dpi} dpi", tesseract, images, truths))
    print(f"{len(truths)} scanned pages, {sum(map(len, truths)) / len(truths):.0f} characters a page\n")
    print("| engine | character accuracy, mean | worst page | wall s a page | CPU s a page |")
    print("|---|---:|---:|---:|---:|")
    for name, mean, worst, wall, cpu in rows:
        print(f"| {name} | {mean:.4f} | {worst:.4f} | {wall:.2f} | {cpu:.2f} |")
    if not shutil.which("tesseract"):
        print("\n(tesseract is not installed: apt-get install tesseract-ocr to measure the reference)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
