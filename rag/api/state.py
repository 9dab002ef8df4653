"""What the server holds for all its requests: the settings, the application service on the index, the chat model
(loaded once, on the first question), and the queues in front of the model and of ingesting."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from fastapi import Request

from rag.api.gate import Gate
from rag.llm import LLM, get_llm
from rag.service import Service
from rag.settings import Settings


@dataclass
class ServerState:
    settings: Settings
    service: Service
    answers: Gate  # generation requests
    uploads: Gate  # ingest requests (one at a time: the index has one writer)
    _llm: LLM | None = None
    _llm_lock: threading.Lock = field(default_factory=threading.Lock)
    _model_ok_at: float = -1e9  # when the model server last answered the check (monotonic seconds)

    MODEL_CHECK_SECONDS = 5.0  # a model that answered this recently is not asked again before a question

    @classmethod
    def open(cls, settings: Settings) -> ServerState:
        return cls(settings, Service.open(settings), Gate(settings.api_concurrency, settings.api_queue),
                   Gate(1, settings.api_queue))

    @property
    def llm(self) -> LLM:
        """The chat model the settings choose, made once (an embedded one loads on its first question)."""
        with self._llm_lock:
            if self._llm is None:
                self._llm = get_llm(self.settings)
            return self._llm

    def model_check(self) -> tuple[bool, str]:
        """``(ok, detail)`` of the chat model before a question: asked of the model server (one ``GET /v1/models``
        for vLLM) unless it answered within ``MODEL_CHECK_SECONDS``, so a stream of questions does not pay a round
        trip each; a failed check is asked again next time, so a server that comes back is seen at once. Blocking:
        call it from a worker thread."""
        if time.monotonic() - self._model_ok_at < self.MODEL_CHECK_SECONDS:
            return True, ""
        ok, detail = self.llm.health()
        self._model_ok_at = time.monotonic() if ok else -1e9
        return ok, detail

    def close(self) -> None:
        self.service.close()


def state(request: Request) -> ServerState:
    return request.app.state.rag  # type: ignore[no-any-return]
