"""Fit numbered passages into the model's context window, counting the model's own tokens (not characters)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from rag.answer.result import source_label
from rag.retrieval.retriever import Hit

MIN_PASSAGE_TOKENS = 48  # a passage cut shorter than this is more confusing than useful


@dataclass(frozen=True)
class Passage:
    n: int  # the number the model cites as [n]
    hit: Hit
    text: str  # the text given to the model: the chunk, or its beginning if it had to be cut


def label(hit: Hit) -> str:
    return source_label(hit.chunk.source, hit.chunk.page, hit.chunk.kind)


def format_passages(passages: list[Passage]) -> str:
    """Numbered and delimited, so the model can tell passages apart and cite them. A document's own text cannot
    close the fence it is quoted in (and so pass the text after it off as the user's): runs of three or more angle
    brackets in it become guillemets."""
    return "\n\n".join(f"[{p.n}] ({unfenced(label(p.hit))})\n<<<\n{unfenced(p.text)}\n>>>" for p in passages)


_FENCE_LIKE = re.compile(r"<{3,}|>{3,}")


def unfenced(text: str) -> str:
    """``text`` with no ``<<<`` or ``>>>`` left in it (``‹‹‹``/``›››`` instead)."""
    return _FENCE_LIKE.sub(lambda m: ("\u2039" if m.group(0)[0] == "<" else "\u203a") * len(m.group(0)), text)


def fit_passages(hits: list[Hit], budget: int, count_tokens: Callable[[str], int]) -> list[Passage]:
    """As many passages as fit in ``budget`` tokens, best first; the last one may be cut at a word boundary."""
    passages: list[Passage] = []
    used = 0
    for hit in hits:
        candidate = Passage(len(passages) + 1, hit, hit.chunk.text)
        cost = count_tokens(format_passages([candidate])) + 2
        if used + cost <= budget:
            passages.append(candidate)
            used += cost
            continue
        room = budget - used
        if room >= MIN_PASSAGE_TOKENS:
            text = _cut(hit.chunk.text, lambda t: count_tokens(format_passages([Passage(0, hit, t)])) + 2 <= room)
            if text:
                passages.append(Passage(len(passages) + 1, hit, text))
        break
    return passages


def _cut(text: str, fits: Callable[[str], bool]) -> str:
    """The longest word-boundary prefix of ``text`` (with an ellipsis) for which ``fits`` holds."""
    words = text.split(" ")
    low, high = 0, len(words)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(" ".join(words[:middle]) + " …"):
            low = middle
        else:
            high = middle - 1
    return " ".join(words[:low]) + " …" if low else ""
