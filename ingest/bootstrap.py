"""``python -m ingest.bootstrap``: before the app starts, fill an empty index with the demo corpus in data/sample/."""

from __future__ import annotations

import argparse
import sys

from ingest.loaders import SUPPORTED_SUFFIXES
from rag.cli import say
from rag.service import Service
from rag.settings import PROJECT_ROOT, get_settings

SAMPLE_DIR = PROJECT_ROOT / "data" / "sample"


def main() -> int:
    settings = get_settings()
    service = Service.for_command(argparse.Namespace(index=settings.index_dir), settings, create=True)
    if docs := service.documents():
        say(f"index {settings.index_dir}: {len(docs)} documents")
        return 0
    say(f"index {settings.index_dir} is empty: adding the demo documents from {SAMPLE_DIR}")
    samples = sorted(p for p in SAMPLE_DIR.iterdir() if p.suffix in SUPPORTED_SUFFIXES)
    report = service.add(samples)
    say(f"added {len(report.added)} documents, {report.chunks} chunks in {report.seconds:.1f} s")
    for failure in report.failed:
        say(f"  failed: {failure.path}: {failure.error}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
