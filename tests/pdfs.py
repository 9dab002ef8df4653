"""Real PDF files for tests, written with fpdf2 (text pages), pypdf (encryption) and Pillow (scanned pages)."""

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


def make_truncated_pdf(path: Path, pages: list[str]) -> Path:
    """A PDF cut off partway, as an interrupted download leaves it."""
    full = make_pdf(path.with_suffix(".full.pdf"), pages)
    data = full.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    full.unlink()
    return path


def page_picture(text: str, *, width: int = 1240, height: int = 1754, size: int = 30) -> Image.Image:
    """A scanned-looking A4 page at 150 dpi: ``text`` drawn in Pillow's own font (no system font needed), wrapped."""
    from PIL import ImageFont

    font = ImageFont.load_default(size=size)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    y = 120
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            if line and draw.textlength(f"{line} {word}", font=font) > width - 240:
                draw.text((120, y), line, font=font, fill=0)
                y, line = y + int(size * 1.5), word
            else:
                line = f"{line} {word}".strip()
        draw.text((120, y), line, font=font, fill=0)
        y += int(size * 2.5)
    return image


def make_scanned_pdf(path: Path, pages: list[str]) -> Path:
    """An image-only PDF written by Pillow: every page a picture of its text, no text layer at all."""
    pictures = [page_picture(text) for text in pages]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], resolution=150)
    return path


def make_partly_scanned_pdf(path: Path, pages: list[tuple[str, bool]]) -> Path:
    """A PDF mixing text pages and scanned pages: ``(text, scanned)`` per page."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text, scanned in pages:
        pdf.add_page()
        if scanned:
            pdf.image(page_picture(text), x=0, y=0, w=210, h=297)
        else:
            pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path
