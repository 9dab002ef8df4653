"""Read and split files one step ahead of embedding, in a separate process.

Parsing (pypdf above all) is plain Python and would hold the interpreter while the model waits; in a process of
its own it runs beside the embedding of the files before it, on the other core. Files come back in the order
given, each as its chunks or as the reason it failed. A file that crashes the parser process (a hostile PDF can)
fails alone: the process is started again for the files after it.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ingest.loaders import LoadedDocument, LoadError, load_document
from ingest.split import Chunk, Splitter
from rag.index.embedder import Embedder, load_tokenizer
from rag.settings import SplitSettings


@dataclass(frozen=True)
class SplitConfig:
    """What a parser process needs to split like this one: the tokenizer's folder and the sizes."""

    model_dir: Path
    chunk_tokens: int
    overlap: int
    max_tokens: int

    @classmethod
    def of(cls, embedder: Embedder, settings: SplitSettings) -> SplitConfig:
        """How ``settings`` split text for ``embedder``'s model (its tokenizer, its limit)."""
        return cls(embedder.path, settings.chunk_tokens, settings.chunk_overlap, embedder.max_tokens)


@dataclass(frozen=True)
class Parsed:
    document: LoadedDocument
    chunks: list[Chunk]


@dataclass(frozen=True)
class ParseFailure:
    reason: str  # for a person
    kind: str  # for a program: LoadError, OSError, ...


def failure_reason(exc: BaseException) -> ParseFailure:
    """What went wrong with one file, in words a user can act on."""
    if isinstance(exc, LoadError):
        return ParseFailure(str(exc), "LoadError")
    if isinstance(exc, OSError):
        return ParseFailure(f"cannot read the file ({exc.strerror or exc})", type(exc).__name__)
    return ParseFailure(f"could not be ingested ({type(exc).__name__}: {exc})"[:500], type(exc).__name__)


@lru_cache(maxsize=4)
def splitter_for(config: SplitConfig) -> Splitter:
    tokenizer = load_tokenizer(config.model_dir)
    return Splitter(
        lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids),
        chunk_tokens=config.chunk_tokens,
        overlap=config.overlap,
        max_tokens=config.max_tokens,
    )


def parse_file(path: Path, config: SplitConfig) -> Parsed | ParseFailure:
    """Load and split one file; any failure comes back as its reason (exceptions need not cross processes)."""
    try:
        document = load_document(path)
        chunks = splitter_for(config).split(document.records)
        if not chunks:
            raise LoadError("no text to index after splitting")
        return Parsed(document, chunks)
    except Exception as exc:  # noqa: BLE001 - one file's bytes must never take the batch down
        return failure_reason(exc)


Parser = Callable[[Path, SplitConfig], "Parsed | ParseFailure"]
PARSE_AHEAD_MIN_SECONDS = 3.0  # parsing left to do that is worth starting the process for
CRASHED = ParseFailure("the parser process stopped while reading this file (it crashed or ran out of memory)",
                       "ParserCrashed")


def parse_in_order(
    paths: list[Path], config: SplitConfig, *, ahead: int, parse: Parser = parse_file,
    min_seconds: float = PARSE_AHEAD_MIN_SECONDS,
) -> Iterator[Parsed | ParseFailure]:
    """Each file's outcome in order.

    Files are read here, one at a time, until the reading still to do (the seconds per file so far, times the
    files left) comes to ``min_seconds``; from then on a separate process reads up to ``ahead`` files in
    advance. Its start-up (a fresh interpreter and its imports, about a second here) is only worth paying for
    that much parsing: on the 48-file benchmark corpus, parsed in under a second, it made ingest slower.
    ``parse`` must be a module-level function (the process imports it by name).
    """
    spent = 0.0
    for done, path in enumerate(paths):
        if ahead > 0 and (min_seconds <= 0 or done and spent / done * (len(paths) - done) >= min_seconds):
            yield from _parse_in_a_process(paths[done:], config, ahead, parse)
            return
        started = time.perf_counter()
        yield parse(path, config)
        spent += time.perf_counter() - started


def _exit_with_parent(parent: int) -> None:
    """In the parser process: leave when the process that started it is gone (killed, say). It would otherwise
    wait for work forever, since it holds the writing end of its own task queue."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


_MAIN_SWAP = threading.Lock()


@contextmanager
def plain_main() -> Iterator[None]:
    """While the parser process (or the workers of ``ingest.fanout``'s local cluster) start, a bare ``__main__``: a
    spawned interpreter re-imports the parent's main module, and under Streamlit (and its AppTest) that is app.py,
    which would run the whole app again in the parser process (or crash it). Neither needs the main module."""
    with _MAIN_SWAP:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


def _parse_in_a_process(paths: list[Path], config: SplitConfig, ahead: int,
                        parse: Parser) -> Iterator[Parsed | ParseFailure]:
    queue = deque(paths)
    while queue:
        # "spawn": a clean interpreter; forking a process that runs threads (the app, onnxruntime) can deadlock.
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_exit_with_parent, initargs=(os.getpid(),))
        running: deque[tuple[Path, Future[Parsed | ParseFailure]]] = deque()
        try:
            try:
                with plain_main():  # the one worker is spawned by its first task
                    pool.submit(os.getpid).result()
            except (RuntimeError, OSError, BrokenProcessPool):
                # No process can start here (say, a script that spawns without a main guard): read here instead.
                yield from (parse(path, config) for path in queue)
                return
            while queue or running:
                while queue and len(running) < ahead:
                    path = queue.popleft()
                    running.append((path, pool.submit(parse, path, config)))
                try:
                    outcome = running.popleft()[1].result()
                except BrokenProcessPool:
                    # The process died on this file (files are parsed in order); the ones after it start again.
                    queue.extendleft(reversed([path for path, _ in running]))
                    yield CRASHED
                    break
                yield outcome
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # also when the caller stops early
