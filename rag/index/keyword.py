"""Keyword search: BM25 over SQLite FTS5, written in the same transaction as the rows it indexes.

Why FTS5 (``bench/keyword_engines.py`` measured it against tantivy and against rebuilding bm25s, the previous engine): it
lives inside the store's SQLite file, so a committed change is searchable at once, a rolled-back one never is, and
a reader sees the keyword index of exactly the rows it sees. Nothing is rebuilt per write: adding or removing a
document touches only its own postings.

Texts go through ``tokenize`` (stemming, a question-word stop list) once, when a chunk is stored: its stems are
kept in the chunk's row (``chunks.tokens``), FTS5 indexes that column as an external-content table (its own
tokenizer only splits the space-joined stems again), a deletion hands FTS5 the same stored stems, and scoring
reads them back instead of tokenizing passages again. Queries go through ``tokenize`` too. When ``tokenize``
changes, ``TOKENIZER_VERSION`` makes the store compute the stems again and rebuild the table.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache

import bm25s.stopwords

K1, B = 1.5, 0.75  # bm25s's defaults, which the shipped fusion was measured with
_EXTRA_CANDIDATES = 20  # FTS5 candidates beyond k, rescored: its ranking differs a little from Lucene's
CANDIDATE_POSTINGS = 2_000  # see _candidate_terms
TOKENIZER_VERSION = "1"  # bump when tokenize() changes: stored postings were made with the old one
_WORD = re.compile(r"(?u)\b\w\w+\b")

SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS keyword USING fts5(tokens, content='chunks', content_rowid='id');
CREATE TABLE IF NOT EXISTS keyword_terms (term TEXT PRIMARY KEY, chunks INTEGER NOT NULL) WITHOUT ROWID;
"""


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


def bm25(query: list[str], passage: list[str], weights: dict[str, float], average_length: float) -> float:
    """Lucene's BM25 of a tokenized passage for a tokenized query (a word the query repeats counts again)."""
    norm = K1 * (1 - B + B * len(passage) / average_length)
    counts = {t: passage.count(t) for t in set(query)}
    return sum(weights.get(t, 0.0) * counts[t] / (counts[t] + norm) for t in query if counts[t])


def idf(documents: int, containing: int) -> float:
    """Lucene's BM25 inverse document frequency, never negative; a term no document holds gets the highest value."""
    return math.log(1 + (documents - containing + 0.5) / (containing + 0.5))


class KeywordIndex:
    """BM25 search over the ``keyword`` FTS5 table of one SQLite connection (the caller holds its lock)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    # --- writing (inside the caller's transaction, after the rows are in / before they go) ------------------------

    def add_document(self, doc_id: int) -> None:
        self.db.execute("INSERT INTO keyword(rowid, tokens) SELECT id, tokens FROM chunks WHERE doc_id = ?", (doc_id,))
        rows = self.db.execute("SELECT tokens FROM chunks WHERE doc_id = ?", (doc_id,)).fetchall()
        self.count_terms([tokens for (tokens,) in rows], +1)

    def remove_document(self, doc_id: int) -> int:
        """Drop a document's postings; returns how many tokens its chunks held."""
        rows = self.db.execute("SELECT id, tokens FROM chunks WHERE doc_id = ?", (doc_id,)).fetchall()
        self.db.executemany("INSERT INTO keyword(keyword, rowid, tokens) VALUES ('delete', ?, ?)", rows)
        self.count_terms([tokens for _, tokens in rows], -1)
        return sum(len(tokens.split()) for _, tokens in rows)

    def count_terms(self, chunks: Iterable[str], sign: int) -> None:
        """Keep ``keyword_terms`` (how many chunks hold each stem: BM25's document frequencies) in step. FTS5's
        own vocabulary table counts by reading a term's whole posting list, which at a million chunks costs more
        than the search itself."""
        counts = Counter(term for tokens in chunks for term in set(tokens.split()))
        self.db.executemany(
            "INSERT INTO keyword_terms(term, chunks) VALUES (?, ?)"
            " ON CONFLICT(term) DO UPDATE SET chunks = chunks + excluded.chunks",
            ((term, sign * n) for term, n in counts.items()),
        )
        if sign < 0:
            self.db.executemany("DELETE FROM keyword_terms WHERE term = ? AND chunks <= 0", ((t,) for t in counts))

    def rebuild(self) -> None:
        """Index every chunk's stored stems afresh."""
        self.db.execute("INSERT INTO keyword(keyword) VALUES ('rebuild')")
        self.db.execute("DELETE FROM keyword_terms")
        last = 0
        while rows := self.db.execute(
            "SELECT id, tokens FROM chunks WHERE id > ? ORDER BY id LIMIT 20000", (last,)
        ).fetchall():
            self.count_terms([tokens for _, tokens in rows], +1)
            last = rows[-1][0]

    # --- reading ---------------------------------------------------------------------------------------------------

    def search(self, query: str, k: int, *, documents: int, tokens: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the best ``k`` chunks holding any of the query's words; higher is better.

        FTS5 finds the candidates (its ``bm25()``: k1 = 1.2 and a Robertson-Sparck Jones IDF that is zero for a word
        in half the chunks); they are then scored with Lucene's BM25 at k1 = 1.5, the scoring of bm25s that the
        fusion weights and the evidence signal were tuned on (``documents`` chunks holding ``tokens`` tokens).
        """
        terms = tokenize(query)
        if not terms or k < 1 or not documents:
            return []
        unique = sorted(set(terms))
        frequencies = self.document_frequencies(unique)
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in _candidate_terms(unique, frequencies))
        if not match:
            return []  # no chunk holds any of the words
        candidates = self.db.execute(
            "SELECT rowid, tokens FROM keyword WHERE keyword MATCH ? ORDER BY rank LIMIT ?",
            (match, k + _EXTRA_CANDIDATES),
        ).fetchall()
        weights = {t: idf(documents, n) for t, n in frequencies.items()}
        average = tokens / documents
        scored = sorted(((i, bm25(terms, stems.split(), weights, average)) for i, stems in candidates),
                        key=lambda hit: (-hit[1], hit[0]))
        return [(int(i), float(s)) for i, s in scored[:k] if s > 0]

    def document_frequencies(self, terms: Sequence[str]) -> dict[str, int]:
        """How many chunks hold each stemmed term (terms no chunk holds are left out)."""
        if not terms:
            return {}
        marks = ",".join("?" * len(terms))
        return dict(self.db.execute(f"SELECT term, chunks FROM keyword_terms WHERE term IN ({marks})", list(terms)))


def _candidate_terms(terms: list[str], frequencies: dict[str, int]) -> list[str]:
    """The query words that pick candidates: the rarest first, while the chunks holding them add up to at most
    ``CANDIDATE_POSTINGS`` (and always the rarest one). FTS5 scores every chunk holding a word of the MATCH, so a
    common word would cost time in proportion to the index; the chunks that only a common word brings score low
    anyway (its IDF is small), and every candidate is still scored on all the query's words (as Lucene's
    common-terms query does). In a small index no word is left out (xquad-dev: 114 chunks, at most 114 postings a
    word)."""
    chosen: list[str] = []
    postings = 0
    for term in sorted((t for t in terms if t in frequencies), key=lambda t: frequencies[t]):
        postings += frequencies[term]
        if chosen and postings > CANDIDATE_POSTINGS:
            break
        chosen.append(term)
    return chosen
