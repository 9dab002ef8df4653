"""``python -m ingest PATH... [--index DIR] [--json] [--workers N | --cluster tcp://HOST:PORT]``, ``--remove NAME...``,
``--list``.

Exit status: 0 when nothing failed, 1 when some files failed (the rest are still ingested), 2 on bad usage.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from ingest.report import IngestReport, Progress
from rag.answer.result import page_unit
from rag.cli import parser, print_json, run, say, settings_with
from rag.errors import ClusterError, EmbeddingError, StoreError
from rag.service import Service


class _Bars:
    """Two tqdm bars on stderr: files done, and chunks embedded in this run (several files embed together)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.files: tqdm | None = None
        self.chunks: tqdm | None = None
        self.embedded: dict[Path, int] = {}  # chunks embedded so far, per file

    def __call__(self, event: Progress) -> None:
        if not self.enabled:
            return
        if self.files is None:
            self.files = tqdm(total=event.files_total, desc="files", unit="file", position=0, file=sys.stderr)
        if event.stage == "parsed":
            if self.chunks is None:
                self.chunks = tqdm(total=0, desc="chunks", unit="chunk", position=1, leave=False, file=sys.stderr)
            self.chunks.total += event.chunks_total
            self.chunks.refresh()
        elif event.stage == "embedding" and self.chunks is not None:
            self.chunks.update(event.chunks_done - self.embedded.get(event.path, 0))
            self.embedded[event.path] = event.chunks_done
        elif event.stage in ("done", "unchanged", "failed"):
            self.files.update(1)
            if event.stage == "failed":
                self.files.write(f"failed: {event.path}: {event.message}", file=sys.stderr)

    def close(self) -> None:
        for bar in (self.chunks, self.files):
            if bar is not None:
                bar.close()


def _summary(report: IngestReport) -> str:
    ocr = f"; {report.ocr_pages} page{'s' if report.ocr_pages != 1 else ''} read by OCR" if report.ocr_pages else ""
    lines = [
        f"added {len(report.added)}, updated {len(report.updated)}, unchanged {len(report.unchanged)}, "
        f"removed {len(report.removed)}, failed {len(report.failed)}; {report.chunks} chunks in {report.seconds:.1f} s"
        + ocr
    ]
    lines += [f"  note: {n.path}: {n.note}" for n in report.notes]
    lines += [f"  failed: {f.path}: {f.error}" for f in report.failed]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m ingest",
               "Add documents (PDF, Word, PowerPoint, web pages, TXT, Markdown) to the index, incrementally.")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="files or folders to ingest")
    p.add_argument("--remove", nargs="+", metavar="NAME", help="delete documents by label (as --list shows) or path")
    p.add_argument("--list", action="store_true", help="list the documents in the index")
    fan = p.add_mutually_exclusive_group()
    fan.add_argument("--workers", type=int, metavar="N", help="read and embed on a local Dask cluster of N one-thread "
                     "worker processes, started and stopped by this command (default: $RAG_INGEST_WORKERS or 0: here)")
    fan.add_argument("--cluster", metavar="tcp://HOST:PORT", help="read and embed on the workers of a running Dask "
                     "scheduler (default: $RAG_INGEST_CLUSTER)")
    args = p.parse_args(argv)
    modes = sum([bool(args.paths), bool(args.remove), args.list])
    if modes != 1:
        p.error("give PATH... to ingest, or --remove NAME..., or --list (one of them)")
    if (args.workers is not None or args.cluster) and not args.paths:
        p.error("--workers and --cluster go with PATH... (they read and embed files)")
    settings = settings_with(p, ingest_workers=args.workers, ingest_cluster=args.cluster)
    if args.workers is not None:  # the option wins over a scheduler named in the environment
        settings = settings.changed(ingest_cluster=None)

    # only adding makes an index
    service = Service.for_command(args, settings, read_only=args.list, create=bool(args.paths))

    if args.list:
        docs = service.documents()
        if args.json:
            print_json([
                {"name": d.name, "kind": d.kind, "pages": d.pages, "chunks": d.chunks, "size": d.size,
                 "path": d.path, "added_at": d.added_at, "updated_at": d.updated_at}
                for d in docs
            ])
        else:
            for d in docs:
                pages = f"{d.pages} {page_unit(d.kind)}{'s' * (d.pages != 1)}, " if d.pages else ""
                print(f"{d.name}\t{pages}{d.chunks} chunk{'s' * (d.chunks != 1)}\tadded {d.added_at}")
        return 0

    bars = _Bars(enabled=True)
    try:
        # The same deletion as the page's: the documents leave the index, and their copies in the upload folder go.
        report = service.delete(args.remove) if args.remove else service.add(args.paths, on_progress=bars)
    # the index is busy, the embeddings server stopped answering, or the ingest cluster cannot be reached
    except (StoreError, EmbeddingError, ClusterError) as exc:
        bars.close()
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:  # each document is committed on its own: those stored so far stay
        bars.close()
        say("interrupted: the documents stored before it are kept; run the same command again to add the rest")
        return 130
    bars.close()
    if args.json:
        print_json(report.to_json())
    say(_summary(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    run(main)
