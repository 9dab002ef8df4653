"""OCR benchmark: RapidOCR (shipped) against Tesseract (the classic engine, Debian's tesseract-ocr) on the same
scanned pages, in one run; characters and words.

    .venv/bin/python bench/ocr.py [--pages 6] [--dpi 150 200 300] [--margins 0 0.1] [--denoise 0 12]

Pages: real text (paragraphs of the xquad-dev Wikipedia articles) typeset at 11 pt on A4 (DejaVu Serif and DejaVu
Sans in turn) at each scan resolution, saved by Pillow as an image-only PDF: "clean" as typeset, "degraded" made to
look scanned (a 0.4 degree skew, a little blur and noise, JPEG at quality 70). Each engine reads each page as the
loader does: the page drawn by PDFium at the loader's RENDER_DPI. RapidOCR runs once per ``--margins`` value (the
margin of paper added around each line's crop, as a fraction of its height: 0 is the engine as it comes, the
shipped value is ingest.loaders.ocr.CROP_MARGIN) and ``--denoise`` value (the strength of the non-local-means
cleaning of each crop, 0 for none; the shipped value is ingest.loaders.ocr.DENOISE).
Character accuracy is 1 - (edit distance / length of the true text), both with their whitespace collapsed; word
accuracy is 1 - word error rate (edit distance over whitespace-separated words / number of true words), so a
dropped space costs two words, as it does to keyword search. Time is per page (median), model loading excluded,
on this machine's 2 cores (onnxruntime and Tesseract each use both): wall clock, and CPU seconds (this process's
threads, or the Tesseract child's), which other jobs sharing the cores disturb far less than the wall clock.
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
import textwrap
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ingest.loaders.ocr as ocr  # noqa: E402

DEFAULT_DOCS = Path(os.environ.get("RAG_XQUAD_DIR", Path(__file__).resolve().parent.parent.parent / "shared" / "eval"
                                   / "xquad-dev")) / "docs"
FONTS = [Path("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"), Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")]


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


def scanned_page(text: str, seed: int, dpi: int = 300, degraded: bool = True) -> Image.Image:
    """The text typeset at 11 pt on an A4 page scanned at ``dpi``; if ``degraded``, skewed, blurred, speckled and
    JPEG-compressed."""
    scale = dpi / 300
    font_file = FONTS[seed % len(FONTS)]
    size = round(46 * scale)
    font = ImageFont.truetype(str(font_file), size) if font_file.exists() else ImageFont.load_default(size=size)
    page = Image.new("L", (round(2480 * scale), round(3508 * scale)), 255)
    draw = ImageDraw.Draw(page)
    y = 250 * scale
    for paragraph in text.split("\n"):
        for line in textwrap.wrap(paragraph, width=78 if seed % 2 == 0 else 72):
            draw.text((250 * scale, y), line, font=font, fill=0)
            y += 66 * scale
        y += 40 * scale
    if not degraded:
        return page
    rng = random.Random(seed)
    page = page.rotate(rng.uniform(-0.4, 0.4), fillcolor=255, resample=Image.Resampling.BICUBIC)
    page = page.filter(ImageFilter.GaussianBlur(0.8 * scale))
    noise = np.random.default_rng(seed).normal(0, 12, (page.height, page.width))
    page = Image.fromarray(np.clip(np.asarray(page, dtype=float) + noise, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    page.save(buffer, "JPEG", quality=70)
    return Image.open(buffer)


def as_pdf(pictures: list[Image.Image], dpi: int) -> bytes:
    buffer = io.BytesIO()
    pictures[0].save(buffer, "PDF", save_all=True, append_images=pictures[1:], resolution=dpi)
    return buffer.getvalue()


def rendered(pdf: bytes) -> list[Image.Image]:
    """The pages as the loader draws them for OCR."""
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    images = [document[i].render(scale=ocr.RENDER_DPI / 72, grayscale=True).to_pil() for i in range(len(document))]
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


def word_accuracy(found: str, truth: str) -> float:
    """1 - word error rate: each distinct word becomes one character, then the same edit distance."""
    codes: dict[str, str] = {}
    def encode(words: list[str]) -> str:
        return "".join(codes.setdefault(w, chr(0xF0000 + len(codes))) for w in words)
    true_words = truth.split()
    return 1 - edit_distance(encode(found.split()), encode(true_words)) / len(true_words)


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


def measure(name: str, read, images: list[Image.Image], truths: list[str]) -> tuple:  # noqa: ANN001
    chars, words, wall, cpu = [], [], [], []
    for image, truth in zip(images, truths, strict=True):
        started, started_cpu = time.perf_counter(), cpu_seconds()
        found = read(image)
        wall.append(time.perf_counter() - started)
        cpu.append(cpu_seconds() - started_cpu)
        chars.append(accuracy(found, truth))
        words.append(word_accuracy(found, truth))
    return (name, float(np.mean(chars)), float(np.mean(words)), float(min(words)), float(np.median(wall)),
            float(np.median(cpu)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=Path, default=DEFAULT_DOCS)
    p.add_argument("--pages", type=int, default=6)
    p.add_argument("--dpi", type=int, nargs="+", default=[150, 200, 300], help="scan resolutions")
    p.add_argument("--margins", type=float, nargs="+", default=[0.0, ocr.CROP_MARGIN],
                   help="RapidOCR's crop margins to compare (0: the engine as it comes)")
    p.add_argument("--denoise", type=float, nargs="+", default=[0.0, ocr.DENOISE],
                   help="strengths of the crops' denoising to compare (0: none)")
    args = p.parse_args()

    truths = page_texts(args.docs, args.pages)
    engine = ocr._engine()
    ocr.read_image(scanned_page(truths[0], 0).crop((0, 0, 1200, 600)), engine)  # warm up onnxruntime's plans
    rows = []
    for dpi in args.dpi:
        for degraded in (False, True):
            pictures = [scanned_page(t, seed, dpi, degraded) for seed, t in enumerate(truths)]
            images = rendered(as_pdf(pictures, dpi))
            state = "degraded" if degraded else "clean"
            for margin in args.margins:
                for denoise in args.denoise:
                    ocr.CROP_MARGIN, ocr.DENOISE = margin, denoise
                    label = "as it comes" if margin == denoise == 0 else ", ".join(
                        [f"crop margin {margin:g}"] * bool(margin) + [f"denoised {denoise:g}"] * bool(denoise))
                    rows.append(measure(f"RapidOCR (PP-OCRv4), {label}, {dpi}-dpi scan, {state}",
                                        lambda im: ocr.read_image(im, engine), images, truths))
            if shutil.which("tesseract"):
                rows.append(measure(f"reference: Tesseract 5 (eng), {dpi}-dpi scan, {state}", tesseract, images,
                                    truths))
    print(f"{len(truths)} scanned pages, {sum(map(len, truths)) / len(truths):.0f} characters a page, drawn at "
          f"{ocr.RENDER_DPI} dpi\n")
    print("| engine, scan | character accuracy | word accuracy | worst page, words | wall s a page | CPU s a page |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, chars, words, worst, wall, cpu in rows:
        print(f"| {name} | {chars:.4f} | {words:.4f} | {worst:.4f} | {wall:.2f} | {cpu:.2f} |")
    if not shutil.which("tesseract"):
        print("\n(tesseract is not installed: apt-get install tesseract-ocr to measure the reference)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
