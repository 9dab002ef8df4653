"""What an ingest run tells its caller: progress events while it works, and a report when it is done."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Stage = Literal["waiting", "start", "parsed", "embedding", "done", "unchanged", "failed"]


@dataclass(frozen=True)
class Progress:
    """One step of an ingest run, for progress bars: which file, what stage, how many chunks embedded so far."""

    path: Path
    file_index: int  # 0-based position in this run
    files_total: int
    stage: Stage
    chunks_done: int = 0
    chunks_total: int = 0
    message: str = ""


ProgressCallback = Callable[[Progress], None]


@dataclass
class Failure:
    path: str
    error: str  # the reason, for a person
    type: str | None = None  # what went wrong, for a program: LoadError, OSError, UnicodeDecodeError, ...


@dataclass
class Note:
    """Something a person should know about how a file was read, e.g. "2 pages read by OCR (1, 2)"."""

    path: str
    note: str


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    chunks: int = 0  # chunks written in this run
    seconds: float = 0.0
    ocr_pages: int = 0  # PDF pages without a text layer, read by OCR in this run
    notes: list[Note] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, object]:
        """The stable ``python -m ingest --json`` shape: counts, failures with reasons, chunks, seconds; then the
        pages read by OCR and notes on how files were read."""
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "removed": len(self.removed),
            "failed": [asdict(f) for f in self.failed],
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "ocr_pages": self.ocr_pages,
            "notes": [asdict(n) for n in self.notes],
        }
