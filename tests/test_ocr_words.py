"""OCR keeps the words of a 150-dpi scan apart: the recogniser read tight line crops with their spaces dropped
("TheparishbellwascastbyOttolineSparrowhawk"), so keyword search missed every word of the line."""

from __future__ import annotations

from pathlib import Path

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ingest.loaders import load_document

LINES = [
    "The parish bell was cast by Ottoline Sparrowhawk in 1893 and rung for the",
    "first time at the wedding of her niece, who later moved to Lisbon with a",
    "merchant of cork and wine; the tower itself is older by two centuries.",
]


def _strip() -> Image.Image:
    """An A4-wide strip scanned at 150 dpi, 11 pt sans-serif (23 pixels)."""
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 23)
    image = Image.new("L", (1240, 300), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(LINES):
        draw.text((120, 60 + 35 * i), line, font=font, fill=0)
    return image


def _assert_words_apart(path: Path) -> None:
    """The scan is read by OCR with at most one of its words lost or run into another."""
    doc = load_document(path)
    assert doc.ocr_pages == [1]
    found = doc.records[0].text.split()
    truth = " ".join(LINES).split()
    assert "Sparrowhawk" in found and "Lisbon" in found
    right = sum(word in found for word in truth)
    assert right >= len(truth) - 1, f"only {right} of {len(truth)} words read apart: {doc.records[0].text!r}"


def test_a_150_dpi_scan_keeps_its_words_apart(tmp_path: Path) -> None:
    image = _strip()
    path = tmp_path / "scan.pdf"
    image.save(path, resolution=150)
    _assert_words_apart(path)


def test_a_grainy_150_dpi_scan_keeps_its_words_apart(tmp_path: Path) -> None:
    """The same strip as a worn scan leaves it: a little blur, sensor noise, JPEG at quality 70. The grain in the
    gaps between words ran them together ("Theparishbell..."); the line crops are now cleaned of it first."""
    image = _strip().filter(ImageFilter.GaussianBlur(0.4))
    noise = np.random.default_rng(7).normal(0, 12, (image.height, image.width))
    image = Image.fromarray(np.clip(np.asarray(image, dtype=float) + noise, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=70)
    path = tmp_path / "grainy.pdf"
    Image.open(buffer).save(path, resolution=150)

    _assert_words_apart(path)
