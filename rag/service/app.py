"""The application service: everything the page, the commands and the HTTP API do with documents and the index.

One door, so that an operation means the same whoever asks for it: deleting a document through ``ingest --remove``
or through the page both remove it from the index and delete its copy in the upload folder. Callers never hold the
store, the ingest pipeline or the retriever themselves.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.pipeline import Ingestor
from ingest.report import IngestReport, ProgressCallback
from rag.answer.answerer import Answerer, Event
from rag.index.records import DocumentInfo, StoreError
from rag.index.base import Index
from rag.index.store import open_store
from rag.llm import LLM, Message, get_llm
from rag.retrieval.retriever import Retriever
from rag.service.library import Library, Upload
from rag.settings import Settings

if TYPE_CHECKING:
    from rag.agent.events import AgentEvent
    from rag.agent.loop import Agent


class Service:
    """The documents of one index and the questions asked of them, under one set of settings.

    A service opened ``read_only`` (the commands that only read) refuses every operation that would write."""

    def __init__(self, store: Index, settings: Settings, *, read_only: bool = False) -> None:
        self.store = store
        self.settings = settings
        self.read_only = read_only
        self.library = Library(store, settings=settings)

    @classmethod
    def open(cls, settings: Settings, *, read_only: bool = False) -> Service:
        """The service of the index in ``settings.index_dir`` (created if missing, unless ``read_only``)."""
        return cls(open_store(settings.index_dir, create=not read_only), settings, read_only=read_only)

    @classmethod
    def for_command(cls, args: argparse.Namespace, settings: Settings | None = None, *,
                    read_only: bool = False, create: bool = False) -> Service:
        """The service of the index a command names with ``--index`` (or the settings'), or exit 2 with the reason
        it cannot be used (``rag.cli.open_index``: no index there, unless ``create``). Its upload folder is the one
        beside that index, as the page's."""
        from rag.cli import open_index, settings_or_exit

        store = open_index(args, create=create and not read_only)
        settings = settings or settings_or_exit()
        return cls(store, settings.changed(index_dir=store.dir), read_only=read_only)

    def configured(self, settings: Settings) -> Service:
        """The same index under other settings (the page reads them afresh on every run)."""
        return Service(self.store, settings.changed(index_dir=self.store.dir), read_only=self.read_only)

    def close(self) -> None:
        self.store.close()

    # --- the library ---------------------------------------------------------------------------------------------

    def documents(self) -> list[DocumentInfo]:
        return self.library.documents()

    def add(self, paths: Iterable[Path], on_progress: ProgressCallback | None = None) -> IngestReport:
        """Ingest files and folders where they are (nothing is copied); a folder's documents whose files are gone
        from it are removed."""
        self._writable()
        return Ingestor(self.store, settings=self.settings, on_progress=on_progress).ingest(paths)

    def upload(self, uploads: Iterable[Upload], on_progress: ProgressCallback | None = None) -> IngestReport:
        """Keep uploaded files in the upload folder under safe names and ingest them (``Library.add``)."""
        self._writable()
        return self.library.add(uploads, on_progress)

    def delete(self, names: Iterable[str]) -> IngestReport:
        """Remove documents by label or path, and their copies in the upload folder (``Library.delete``)."""
        self._writable()
        return self.library.delete(names)

    def reindex(self, on_progress: ProgressCallback | None = None) -> IngestReport:
        self._writable()
        return self.library.reindex(on_progress)

    def page_pdf(self, name: str, page: int) -> bytes | None:
        return self.library.page_pdf(name, page)

    def suggested_questions(self, limit: int = 4) -> list[str]:
        return self.library.suggested_questions(limit)

    # --- questions -----------------------------------------------------------------------------------------------

    def retriever(self) -> Retriever:
        return Retriever(self.store, settings=self.settings)

    def search(self, query: str, k: int | None = None) -> list[dict[str, object]]:
        """The ``k`` best passages as ``python -m rag.search --json`` rows: rank, score, source, page, chunk_id,
        text."""
        return [hit.to_json() for hit in self.retriever().search(query, k)]

    def answerer(self, llm: LLM | None = None) -> Answerer:
        """Answers from this index with ``llm`` (None: the one the settings choose)."""
        return Answerer(self.retriever(), llm or get_llm(self.settings), self.settings)

    def ask(self, question: str, history: list[Message] | None = None, llm: LLM | None = None) -> Iterator[Event]:
        """An answer as it is made: ``Retrieved``, then ``Delta`` text, then one ``Finished`` (``Answerer.run``)."""
        return self.answerer(llm).run(question, history)

    def agent(self, llm: LLM | None = None) -> Agent:
        """Agent mode on this index: the model reasons in steps with tools."""
        from rag.agent.loop import Agent  # the agent's tools and sandbox load only when it is used

        return Agent(self.retriever(), llm or get_llm(self.settings), self.settings)

    def run_agent(self, question: str, history: list[Message] | None = None,
                  llm: LLM | None = None) -> Iterator[AgentEvent]:
        """The agent's run as it happens: ``AgentText``, each ``AgentStep``, then one ``AgentFinished``."""
        return self.agent(llm).run(question, history)

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"{self.store.dir}: opened read-only; this command does not change the index")
