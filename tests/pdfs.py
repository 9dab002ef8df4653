"""Real PDF files for tests, written with fpdf2 (text pages) and pypdf (encryption)."""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF
from PIL import Image, ImageDraw
from pypdf import PdfReader, PdfWriter


def make_pdf(path: Path, pages: list[str]) -> Path:
    """A PDF with one page per string, each page's text extractable."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def make_encrypted_pdf(path: Path, pages: list[str], *, password: str) -> Path:
    """Encrypt a text PDF with pypdf's writer (AES-256). An empty ``password`` still encrypts the file."""
    plain = make_pdf(path.with_suffix(".plain.pdf"), pages)
    writer = PdfWriter()
    for page in PdfReader(plain).pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password="owner-secret", algorithm="AES-256")
    with open(path, "wb") as handle:
        writer.write(handle)
    plain.unlink()
    return path


def make_image_only_pdf(path: Path) -> Path:
    """A scanned-looking page: a picture of words, no text layer."""
    image = Image.new("RGB", (600, 200), "white")
    ImageDraw.Draw(image).text((20, 80), "This text is only pixels.", fill="black")
    pdf = FPDF()
    pdf.add_page()
    pdf.image(image, x=10, y=10, w=180)
    pdf.output(str(path))
    return path


def make_truncated_pdf(path: Path, pages: list[str]) -> Path:
    """A PDF cut off partway, as an interrupted download leaves it."""
    full = make_pdf(path.with_suffix(".full.pdf"), pages)
    data = full.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    full.unlink()
    return path
