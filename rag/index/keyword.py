"""Keyword search (BM25, via bm25s) over the same chunks as the dense index, kept beside it on disk."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import bm25s
import numpy as np

_WORD = re.compile(r"(?u)\b\w\w+\b")


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def tokenize(text: str) -> list[str]:
    """Lower-cased, stop words dropped, Snowball-stemmed words: "Died in Warsaw" -> ["die", "warsaw"]."""
    words = [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]
    return _stemmer().stemWords(words)


# Lucene's short English list, plus the question words, auxiliaries and pronouns that questions are made of: they
# say nothing about what a passage must contain, and a small corpus that never uses "did" would make it look rare.
_STOPWORDS = frozenset(bm25s.stopwords.STOPWORDS_EN) | frozenset(
    "what when where who whom whose which why how do does did done doing has have had having were been being am can"
    " could would should may might must shall i me my mine we us our you your he him his she her its them from"
    " about than so very also any some all each other".split()
)


@dataclass
class SparseIndex:
    """A BM25 index whose rows are chunk ids."""

    ids: np.ndarray
    model: bm25s.BM25 | None  # None when there are no chunks

    @classmethod
    def build(cls, ids: list[int], texts: list[str]) -> SparseIndex:
        if not ids:
            return cls(np.zeros(0, dtype=np.int64), None)
        model = bm25s.BM25()
        model.index([tokenize(t) for t in texts], show_progress=False)
        return cls(np.asarray(ids, dtype=np.int64), model)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the best ``k`` chunks with a score above zero."""
        tokens = tokenize(query)
        if self.model is None or not tokens:
            return []
        scores = self.model.get_scores(tokens)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(self.ids[i]), float(scores[i])) for i in top if scores[i] > 0]

    def idf(self, terms: list[str]) -> list[float]:
        """Inverse document frequency of stemmed terms; a term the corpus never uses gets the highest value."""
        n = len(self.ids)
        if self.model is None:
            return [0.0 for _ in terms]
        indptr = self.model.scores["indptr"]
        vocab = self.model.vocab_dict
        out = []
        for term in terms:
            column = vocab.get(term)
            df = int(indptr[column + 1] - indptr[column]) if column is not None and column + 1 < len(indptr) else 0
            out.append(math.log(1 + (n - df + 0.5) / (df + 0.5)))
        return out

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        np.save(folder / "ids.npy", self.ids)
        if self.model is not None:
            self.model.save(str(folder / "bm25"), show_progress=False)
        (folder / "done.json").write_text(json.dumps({"chunks": len(self.ids)}))

    @classmethod
    def load(cls, folder: Path) -> SparseIndex:
        if not (folder / "done.json").exists():
            raise FileNotFoundError(folder / "done.json")
        ids = np.load(folder / "ids.npy")
        model = bm25s.BM25.load(str(folder / "bm25"), show_progress=False) if len(ids) else None
        return cls(ids, model)
