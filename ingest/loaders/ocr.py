"""Reading scanned pages: each page drawn by PDFium (pypdfium2), its words read by RapidOCR, offline.

RapidOCR (``rapidocr-onnxruntime``) runs the PP-OCRv4 detection and recognition models that ship inside its
wheel on onnxruntime, so it installs with pip and never downloads anything. bench/ocr.py measured it against
Tesseract on rendered pages; docs/benchmarks.md gives the figures and the reasons for the choice.

Pages are rendered rather than their embedded images extracted: a scan may be cut into strips, rotated by the
page, or compressed with JBIG2 or CCITT, and rendering sees the page exactly as a reader does in every case.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ingest.loaders.base import LoadError

RENDER_DPI = 300  # bench/ocr.py: 0.998 character accuracy at 300 dpi, 0.990 at 200 (words run together)
# Each line's crop gets a margin of this fraction of its height on every side before the recogniser reads it. The
# detector's boxes hug the letters; the recogniser scales a crop to 48 pixels high, so a tight crop's text fills
# it, larger than the PP-OCR models were trained on, and it drops the spaces between words ("Theparishbellwascast"
# from a 150-dpi scan). bench/ocr.py: word accuracy on clean 150-dpi scans from 0.576 to 0.981, 300 dpi unchanged.
CROP_MARGIN = 0.2
# Each crop is then cleaned of a scan's grain (sensor noise, JPEG's blocks and ringing) by non-local means, this
# strong (0: not at all). On a degraded 150-dpi scan the grain, drawn twice as large by the 300-dpi rendering, falls
# into the narrow gaps between words, and the recogniser reads through them ("OnOctober61973,yriaandEgypt").
# bench/ocr.py: word accuracy on degraded 150-dpi scans 0.776 -> 0.990 (six pages), the other scans within two
# words of about 1,900; about 35 ms a line (docs/benchmarks.md, "Grainy scans").
DENOISE = 12


@dataclass(frozen=True)
class _Box:
    top: float
    bottom: float
    left: float
    text: str


def read_pdf_pages(data: bytes, pages: list[int]) -> tuple[dict[int, str], list[str]]:
    """The text OCR reads on those of the given 1-based pages that show a picture (a page with neither text nor
    picture is blank, or drawn with lines only: nothing to read), and a warning for each page it could not read."""
    texts: dict[int, str] = {}
    warnings: list[str] = []
    engine = _engine()
    for number, image in _rendered(data, pages, warnings):
        try:
            texts[number] = read_image(image, engine)
        except Exception as exc:  # noqa: BLE001 - one unreadable picture must not lose the other pages
            warnings.append(f"page {number}: OCR failed ({type(exc).__name__}: {exc})")
    return texts, warnings


def read_image(image: Any, engine: Any = None) -> str:
    """The text in a picture (a PIL image), in reading order: lines top to bottom, a blank line between blocks."""
    import numpy as np

    # No per-line angle classifier: it turns long upright lines upside down (bench/ocr.py), and scans come upright.
    result, _ = (engine or _engine())(np.asarray(image.convert("RGB")), use_cls=False)
    return _lines([_box(item) for item in result or []])


def _rendered(data: bytes, pages: list[int], warnings: list[str]) -> Iterator[tuple[int, Any]]:
    import pypdfium2
    from pypdfium2.raw import FPDF_PAGEOBJ_IMAGE

    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        warnings.append(f"the pages without text could not be drawn for OCR ({exc})")
        return
    try:
        for number in pages:
            try:
                page = document[number - 1]
                if next(page.get_objects(filter=[FPDF_PAGEOBJ_IMAGE], max_depth=3), None) is None:
                    continue
                image = page.render(scale=RENDER_DPI / 72, grayscale=True).to_pil()
            except (pypdfium2.PdfiumError, IndexError) as exc:
                warnings.append(f"page {number}: could not be drawn for OCR ({exc})")
                continue
            yield number, image
    finally:
        document.close()


@lru_cache(maxsize=1)
def _engine() -> Any:
    """One RapidOCR for the process (loading its three models takes about a second)."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as exc:
        raise LoadError(f"the page has no text layer and the OCR engine is not installed ({exc})") from exc
    # Lines are cut from the page at full resolution (the default shrinks pages to 2000 pixels first, and the
    # recogniser then runs words together: 0.88 character accuracy instead of 0.998); only the detector, which
    # finds the lines, works on a copy shrunk to 1280 pixels, which finds them as well and faster.
    class _MarginedRapidOCR(RapidOCR):  # type: ignore[misc]
        def get_crop_img_list(self, img: Any, dt_boxes: Any) -> list[Any]:
            return [_denoised(_with_margin(crop, CROP_MARGIN), DENOISE)
                    for crop in super().get_crop_img_list(img, dt_boxes)]

    from rag.settings import get_settings

    threads = get_settings().ocr_threads  # 0: ONNX Runtime's own choice, a thread per core
    return _MarginedRapidOCR(max_side_len=10_000, det_limit_type="max", det_limit_side_len=1280,
                             **({"intra_op_num_threads": threads} if threads else {}))


def _with_margin(crop: Any, margin: float) -> Any:
    """The line's crop on a border of plain paper (the crop's median shade), ``margin`` of its height wide: not its
    edge pixels repeated, which would draw the noise of a scanned page's edge into streaks."""
    import cv2
    import numpy as np

    width = round(min(crop.shape[:2]) * margin)
    if not width:
        return crop
    paper = [float(v) for v in np.median(crop.reshape(-1, crop.shape[-1]), axis=0)]
    return cv2.copyMakeBorder(crop, width, width, width, width, cv2.BORDER_CONSTANT, value=paper)


def _denoised(crop: Any, strength: float) -> Any:
    """The crop in grey, its grain smoothed by non-local means (each pixel averaged with the pixels whose
    surroundings look like its own: the paper evens out, the strokes and the gaps between letters keep their edges,
    which a blur would smear); small windows, for speed. A strength of 0 leaves the crop as it is."""
    import cv2

    if not strength:
        return crop
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    clean = cv2.fastNlMeansDenoising(grey, None, h=strength, templateWindowSize=5, searchWindowSize=11)
    return cv2.cvtColor(clean, cv2.COLOR_GRAY2RGB)


def _box(item: Any) -> _Box:
    points, text = item[0], item[1]
    ys = [p[1] for p in points]
    return _Box(top=min(ys), bottom=max(ys), left=min(p[0] for p in points), text=text)


def _lines(boxes: list[_Box]) -> str:
    """Boxes whose middles fall within one another's height form a line; a gap taller than a line starts a block."""
    lines: list[list[_Box]] = []
    for box in sorted(boxes, key=lambda b: b.top):
        middle = (box.top + box.bottom) / 2
        if lines and middle < max(b.bottom for b in lines[-1]):
            lines[-1].append(box)
        else:
            lines.append([box])
    out: list[str] = []
    previous: list[_Box] | None = None
    for line in lines:
        if previous is not None:
            height = max(b.bottom - b.top for b in previous)
            gap = min(b.top for b in line) - max(b.bottom for b in previous)
            out.append("\n\n" if gap > height else "\n")
        out.append(" ".join(b.text for b in sorted(line, key=lambda b: b.left)))
        previous = line
    return "".join(out)
