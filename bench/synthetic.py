"""A synthetic library for scale benchmarks: documents of 180-word chunks with random unit vectors, no model.

Texts are words drawn from the xquad-dev articles' own vocabulary (by their frequency there, with each topic's own
handful of words made 30 times likelier), plus one word in six from a long Zipf tail of 500,000 made-up names (a
real library of a million passages has hundreds of thousands of distinct words: names, numbers, terms), so
keyword queries meet realistic posting-list lengths. Vectors are random
unit vectors scattered around one random centre per topic (cosine about 0.7 to it), the way embeddings of related
passages cluster; a structureless cloud would make every approximate index look worse than it is on real text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

XQUAD_DOCS = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "xquad-dev" / "docs"
FALLBACK_DOCS = Path(__file__).resolve().parent.parent / "tests" / "data" / "xquad"
WORDS_PER_CHUNK = 180
CHUNKS_PER_DOC = 20
CHUNKS_PER_TOPIC = 200
RARE_WORDS = 500_000


@dataclass(frozen=True)
class SyntheticDocument:
    path: str
    base: str
    texts: list[str]
    vectors: np.ndarray


class Corpus:
    """Deterministic for a seed: the same documents, texts and vectors every run."""

    def __init__(self, dim: int = 384, seed: int = 0) -> None:
        folder = XQUAD_DOCS if XQUAD_DOCS.is_dir() else FALLBACK_DOCS
        counts = Counter(w for f in sorted(folder.glob("*.md")) for w in re.findall(r"[a-z]{3,}", f.read_text().lower()))
        self.words = np.array(sorted(counts))
        self.weights = np.array([counts[w] for w in self.words], dtype=np.float64)
        self.dim = dim
        self.seed = seed

    def topic_centre(self, topic: int) -> np.ndarray:
        centre = np.random.default_rng((self.seed, topic, 1)).normal(size=self.dim)
        return (centre / np.linalg.norm(centre)).astype(np.float32)

    def document(self, number: int, chunks: int = CHUNKS_PER_DOC, version: int = 0) -> SyntheticDocument:
        rng = np.random.default_rng((self.seed, number, version, 2))
        topic = number * CHUNKS_PER_DOC // CHUNKS_PER_TOPIC
        topic_rng = np.random.default_rng((self.seed, topic, 3))
        p = self.weights.copy()
        p[topic_rng.choice(len(p), size=40, replace=False)] *= 30
        p /= p.sum()
        texts = [self._text(rng, p) for _ in range(chunks)]
        noise = rng.normal(size=(chunks, self.dim)) / np.sqrt(self.dim)
        vectors = self.topic_centre(topic) + noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        name = f"doc{number:07d}.txt"
        return SyntheticDocument(f"/synthetic/{name}", name, texts, vectors.astype(np.float32))

    def _text(self, rng: np.random.Generator, p: np.ndarray) -> str:
        words = list(self.words[rng.choice(len(p), size=WORDS_PER_CHUNK - WORDS_PER_CHUNK // 6, p=p)])
        names = [f"zq{n}x" for n in (rng.zipf(1.3, size=WORDS_PER_CHUNK // 6) - 1) % RARE_WORDS]
        for name in names:
            words.insert(int(rng.integers(0, len(words) + 1)), name)
        return " ".join(words)

    def documents(self, chunks_total: int) -> Iterator[SyntheticDocument]:
        for number in range(-(-chunks_total // CHUNKS_PER_DOC)):
            yield self.document(number, min(CHUNKS_PER_DOC, chunks_total - number * CHUNKS_PER_DOC))


def new_chunks(document: SyntheticDocument) -> list:  # noqa: ANN201 - rag.index.records.NewChunk
    from rag.index.records import NewChunk, sha256_text

    return [
        NewChunk(text, None, None, 0, len(text), WORDS_PER_CHUNK, None, sha256_text(text), vector)
        for text, vector in zip(document.texts, document.vectors, strict=True)
    ]


def put(store, document: SyntheticDocument) -> None:  # noqa: ANN001 - a rag.index.store.Store in writer mode
    store.put_document(
        path=document.path, base=document.base, kind="txt", sha256=f"synthetic-{document.base}",
        size=sum(len(t) for t in document.texts), pages=None, recipe="synthetic", chunks=new_chunks(document),
    )


def clustered_vectors(count: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    """``count`` unit vectors, ``CHUNKS_PER_TOPIC`` around each random topic centre (as ``Corpus`` makes them)."""
    corpus = Corpus.__new__(Corpus)
    corpus.dim, corpus.seed = dim, seed
    out = np.empty((count, dim), dtype=np.float32)
    rng = np.random.default_rng((seed, 4))
    for start in range(0, count, CHUNKS_PER_TOPIC):
        n = min(CHUNKS_PER_TOPIC, count - start)
        block = corpus.topic_centre(start // CHUNKS_PER_TOPIC) + rng.normal(size=(n, dim)).astype(np.float32) / np.sqrt(dim)
        out[start : start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out
