"""Embeddings from an OpenAI-compatible ``/v1/embeddings`` server (``RAG_EMBED_URL``): vLLM on a GPU machine.

vLLM serves embedding models with ``--runner pooling`` (``scripts/vllm.sh --embed`` serves the bundled MiniLM;
the tests do, on this CPU). Documents and queries both go to the server, so they always share one model. The
index records the served model's name (``RAG_EMBED_MODEL``) and its dimension, and refuses vectors from any other:
serve the bundled MiniLM as ``all-MiniLM-L6-v2`` and its vectors equal the local float32 ones (tests check this),
so the same index works either way.

Chunks are still sized with the bundled tokenizer, and every text is cut to its window (254 word pieces) before
it is sent, as sentence-transformers cuts it: a server answers an over-long input with an error, not a cut.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import openai

from rag.index.embedder import Embedder
from rag.errors import EmbeddingError


class EmbeddingServerError(EmbeddingError):
    """The embeddings server could not be used; the message names it and says why. A network failure, not a
    storage one; without it the index can be neither searched nor written, so it stops a command (exit 2 on
    opening, 1 mid-ingest) rather than failing every file one after the other."""


class ServerEmbedder(Embedder):
    backend = "openai"

    def __init__(self, url: str, model: str, api_key: str = "", *, timeout: float = 120.0,
                 path: Path | None = None) -> None:
        super().__init__(path)
        self.url = url.strip().rstrip("/")
        self.name = model
        self.client = openai.OpenAI(base_url=self.url, api_key=api_key or "none", timeout=timeout, max_retries=2)
        self._reached = False

    @cached_property
    def dim(self) -> int:
        """The served model's dimension, from one probe request (the index checks it against its own)."""
        return int(self.embed_batch(["dimension probe"]).shape[1])

    @property
    def loaded(self) -> bool:
        return self._reached

    def load(self) -> None:
        _ = self.dim  # one request: the server answers, and with how many dimensions

    def fit(self, text: str) -> str:
        """``text`` cut to the model's window, counted with the bundled tokenizer."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        if len(encoding.ids) <= self.max_tokens:
            return text
        return text[: encoding.offsets[self.max_tokens - 1][1]]

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        where = f"the embeddings server at {self.url} (model {self.name})"
        try:
            response = self.client.embeddings.create(model=self.name, input=[self.fit(t) for t in texts])
        except openai.APIStatusError as exc:
            raise EmbeddingServerError(f"{where} answered HTTP {exc.status_code}: {exc.message}") from exc
        except openai.APITimeoutError as exc:
            raise EmbeddingServerError(f"{where} did not answer in time") from exc
        except openai.APIConnectionError as exc:
            raise EmbeddingServerError(f"cannot reach {where} ({exc.__cause__ or exc})") from exc
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(texts):
            raise EmbeddingServerError(f"{where} returned {len(rows)} vectors for {len(texts)} texts")
        self._reached = True
        vectors = np.asarray([row.embedding for row in rows], dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)  # unit length, as the index's inner product expects
