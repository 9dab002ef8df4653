"""Turn the model's [n] markers into citations, and find the sentence of each passage that supports the answer."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from rag.answer.context import Passage
from rag.answer.grounding import check_grounding
from rag.answer.result import Citation
from rag.index.keyword import tokenize

_MARKER = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def cited_numbers(answer: str, valid: set[int]) -> tuple[str, list[int]]:
    """(answer with markers that point nowhere removed, cited passage numbers in order of first citation)."""
    order: list[int] = []

    def keep(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.split(r"\s*[,;]\s*", match.group(1))]
        good = [n for n in numbers if n in valid]
        for n in good:
            if n not in order:
                order.append(n)
        return "".join(f"[{n}]" for n in good)

    cleaned = _MARKER.sub(keep, answer)
    cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", cleaned)  # " ." left where a marker was dropped
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip(), order


def recite(answer: str, passages: dict[int, str], cited: list[int], question: str = "") -> list[int]:
    """The cited passage numbers, then any passage the model was given but did not cite that holds a name or number
    of the answer that the cited ones lack (in passage order, while some are still missing).

    A small model often numbers its citation wrong: it answers "John Elway [2]" from passage [1]. Of 555 answers
    to xquad-dev (bench/verifier-records, halves A and B), the cited passages lacked a name or number of 52; in 47
    of them a passage the model was given but did not cite held it (36 of those 47 answers were right), and in 5 no
    passage did (all 5 wrong). Checked against the cited passages alone, *Not found in your sources* fired mostly
    on right answers. Citing the passage that holds the words shows the reader where they are, and leaves the
    note to what no passage says."""
    if not cited:
        return cited
    missing = set(check_grounding(answer, [passages[n] for n in cited], question).missing)
    out = list(cited)
    for n, text in passages.items():
        if not missing:
            break
        if n in out:
            continue
        still = set(check_grounding(answer, [*(passages[m] for m in out), text], question).missing)
        if len(still) < len(missing):
            out.append(n)
            missing = still
    return out


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``; line breaks end sentences too, and Markdown heading lines are left out."""
    return [
        sentence.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
        for sentence in _SENTENCE_END.split(line)
        if sentence.strip()
    ]


def claims_citing(answer: str, n: int) -> str:
    """The sentences of the answer that cite passage ``n`` (the whole answer if none does)."""
    marker = f"[{n}]"
    sentences = [s for s in split_sentences(answer) if marker in s]
    return _MARKER.sub("", " ".join(sentences) or answer).strip()


def supporting_sentence(passage: str, claim: str, embed: Callable[[list[str]], np.ndarray], question: str = "") -> str:
    """The sentence of ``passage`` that best supports ``claim``: closest in meaning to the question and the claim
    together (a short answer such as "2 minutes" says little on its own), plus the share of the claim's words it
    contains (similarity alone favours a sentence that merely names the same person). Of "steep for 2 minutes"
    and "a second time for 3 minutes", "2 minutes" alone is closer to the second; with "How long should green
    tea steep?" beside it, to the first."""
    sentences = split_sentences(passage)
    if len(sentences) <= 1 or not claim.strip():
        return sentences[0] if sentences else passage
    claim = _MARKER.sub("", claim).strip()
    vectors = embed([f"{question} {claim}".strip(), *sentences])
    claim_words = set(tokenize(claim))
    overlap = np.array([len(claim_words & set(tokenize(s))) / max(len(claim_words), 1) for s in sentences])
    return sentences[int(np.argmax(vectors[1:] @ vectors[0] + overlap))]


def make_citations(passages: list[Passage], claim_source: str, cited: set[int],
                   embed: Callable[[list[str]], np.ndarray], question: str = "") -> list[Citation]:
    """A citation per passage, with the sentence that best supports the answer's claims citing it (or, for a
    passage not cited, ``claim_source`` as a whole: the answer, or the query of a refusal), read with the question
    it answers."""
    out = []
    for p in passages:
        claim = claims_citing(claim_source, p.n) if p.n in cited else claim_source
        context = question if question.strip() != claim_source.strip() else ""
        chunk = p.hit.chunk
        out.append(Citation(n=p.n, source=chunk.source, page=chunk.page, text=chunk.text, chunk_id=chunk.id,
                            kind=chunk.kind, section=chunk.section, cited=p.n in cited,
                            support=supporting_sentence(chunk.text, claim, embed, context)))
    return out
