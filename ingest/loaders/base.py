"""What every loader hands back (records of text with where they came from) and the one error they raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import LoadError as LoadError  # defined with the project's other errors; imported from here too


@dataclass(frozen=True)
class Record:
    """A stretch of a document's text with where it came from."""

    text: str
    page: int | None = None  # 1-based: the PDF page, or the slide number of a presentation
    section: str | None = None  # nearest heading (Markdown, Word, web page) or the slide's title
    offset: int = 0  # character offset of ``text`` within its page (PDF, slide) or the whole document (others)


@dataclass
class LoadedDocument:
    path: Path
    kind: str  # "pdf" | "txt" | "md" | "docx" | "pptx" | "html"
    records: list[Record]
    pages: int | None = None  # PDF pages or slides
    title: str | None = None  # the document's own title (PDF metadata or first-page heading, web page title)
    ocr_pages: list[int] = field(default_factory=list)  # PDF pages whose text was read by OCR
    warnings: list[str] = field(default_factory=list)

    @property
    def notes(self) -> list[str]:
        """What a person should know about how the file was read: OCR'd pages, then any warnings."""
        ocr = []
        if self.ocr_pages:
            shown = ", ".join(map(str, self.ocr_pages))
            ocr = [f"{len(self.ocr_pages)} page{'s' if len(self.ocr_pages) > 1 else ''} read by OCR ({shown})"]
        return ocr + self.warnings
