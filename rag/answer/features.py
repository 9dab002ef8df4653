"""What is known about an answer once it is written: a typed vector of cheap signals a calibrator weighs.

Most are by-products of the answer step (``rag.answer.answerer``): the model's probability of each token it wrote
(``TokenProbs``; the least and the mean, up to the first ``[n]``, as ``rag.answer.confidence`` reads them), the
three checks' results (``grounding``, ``support``, ``confidence``), the evidence score of retrieval
(``rag.retrieval.evidence``) and the cited passage's rank and fused score. The others are rules over the text:

- ``answer_words``: the answer's length in words (``[n]`` markers dropped);
- ``question_overlap``: the share of the answer's content words the question already has (an answer that restates
  the question says little);
- ``type_asked`` / ``type_mismatch``: whether the question asks for a kind of thing (who → a capitalised name,
  when → a date or year, how many/much → a number, where → a capitalised place) and whether the answer is not of
  that kind;
- ``distance``: in the passage sentence holding the answer's words, how many words lie between the answer and the
  nearest of the question's rare words (``DISTANCE_CAP`` when the sentence holds none of them or no sentence holds
  the answer): a small model's wrong answers are often a real name from the far end of the right sentence;
- ``verbatim``: the longest run of the answer's words (lower case, punctuation and a leading article dropped) that a
  cited passage holds word for word, as a share of its words: extractive answers are copied from a passage, and a
  small model's wrong ones are often its own phrasing or a mix of two places;
- ``repeats_question``: 1 when every content word of the answer is already in the question ("Who was the Normans'
  main enemy in Italy, the Byzantine Empire and Armenia?" answered "the Byzantine Empire and Armenia");
- ``agreement``: asked again with one closing line asking for the bare answer (``second_reply``; the KV cache keeps
  the passages, so it costs one short generation), the share of what the second reply says (its content words by
  stem, its numbers by value: ``what_it_says``) that the first answer says too. None when not asked: it costs time
  and is computed only when the model's calibrator uses it;
- ``question_fit``: asked back: the question read as the model's reply after the passages, the answer and a
  request for the question it answers (``ASKED_BACK_LINE``; teacher forcing, ``LLM.reply_logprobs``, all of its
  tokens in one batch; the KV cache keeps the passages), the mean log-probability of its tokens: an answer to this
  question makes its words likely, a sure answer to another question makes some of them unlikely. None when not
  asked (as ``agreement``);
- ``consistency``: the same prompt sampled ``SAMPLED_REPLIES`` times at ``SAMPLE_TEMPERATURE`` (self-consistency,
  Wang et al. 2023), the mean ``agreement`` of the samples with the answer: a model that is sure of a fact says it
  again when it may say something else, a guess changes. None when not sampled (as ``agreement``).

``vector()`` gives the features in a fixed order (``NAMES``) with None as NaN; ``rag.answer.calibrator`` turns
them into one probability that the answer is right.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from rag.answer.citations import split_sentences
from rag.answer.confidence import Confidence
from rag.answer.grounding import NUMBER_WORDS, Grounding, number_values
from rag.answer.support import Support
from rag.index.keyword import tokenize
from rag.llm import TokenProbs
from rag.retrieval.evidence import Evidence

DISTANCE_CAP = 30.0  # words: "far" or "not in the answer's sentence"
SECOND_REPLY_LINE = "Reply with only the answer's words, exactly as the passage writes them."
SAMPLED_REPLIES = 4  # the calibrator was fitted on this many samples at this temperature (chosen by verifier fit)
SAMPLE_TEMPERATURE = 0.7
SAMPLE_SEEDS = tuple(range(1, SAMPLED_REPLIES + 1))
SAMPLE_MAX_TOKENS = 24
# Asked back: the question read by the model after the passages and the answer (``question_fit``)
ASKED_BACK_LINE = "Answer: {answer}\nWrite the question that this answer answers."

_MARKER = re.compile(r"\[\d+(?:\s*[,;]\s*\d+)*\]")
_WORD = re.compile(r"[\w'’\-]+", re.UNICODE)
_WHO = re.compile(r"^\W*(who|whom|whose)\b|^\W*(which|what) (person|man|woman|company|team|group|king|player)\b",
                  re.IGNORECASE)
_WHEN = re.compile(r"^\W*(when|what year|which year|in what year|in which year|what date|on what date|"
                   r"what century|what decade)\b", re.IGNORECASE)
_HOW_MANY = re.compile(r"^\W*(how many|how much|how long|how old|how far|how large|how big|how tall|"
                       r"what percent|what percentage)\b", re.IGNORECASE)
_WHERE = re.compile(r"^\W*(where|in what (city|country|state|place|region)|in which (city|country|state|place|"
                    r"region)|what (city|country|state|place|region))\b", re.IGNORECASE)
_MONTHS = frozenset("january february march april may june july august september october november december".split())


@dataclass(frozen=True)
class Features:
    """One answer's signals, all numbers (booleans as 0/1); None where the backend or the step could not tell."""

    p_min: float | None  # the least probable token's probability, up to the first [n]
    p_mean: float | None  # the mean token probability over the same tokens
    p_log_mean: float | None  # the mean log-probability (the answer's per-token likelihood)
    grounded: float  # 1: every name and number of it is in a cited passage
    missing_terms: float  # how many are not
    supported: float  # 1: rag.answer.support found it answering the question
    support_coverage: float  # the question's share around the sentence holding the answer
    sure: float  # 1: rag.answer.confidence's threshold met (or no probabilities)
    evidence: float  # retrieval's evidence probability
    evidence_dense: float
    evidence_coverage: float
    cited_rank: float  # the best rank among cited passages (top_k + 1 when none is cited)
    cited_score: float  # that passage's fused score relative to the best hit's (0 when none cited)
    cited_count: float
    answer_words: float
    question_overlap: float
    type_asked: float
    type_mismatch: float
    distance: float
    agreement: float | None = None
    # added after the first calibrator (records without them read None, and a calibrator imputes them)
    verbatim: float | None = None
    repeats_question: float | None = None
    consistency: float | None = None
    question_fit: float | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(cls.__dataclass_fields__)

    def vector(self) -> list[float]:
        return [math.nan if v is None else float(v) for v in asdict(self).values()]

    def to_json(self) -> dict[str, float | None]:
        return {k: (None if v is None else round(float(v), 5)) for k, v in asdict(self).items()}


NAMES = Features.names()


def answer_text(answer: str) -> str:
    """The answer without its ``[n]`` markers."""
    return " ".join(_MARKER.sub(" ", answer).split())


def probability_features(probs: TokenProbs | None) -> tuple[float | None, float | None, float | None]:
    """Least, mean and mean-log probability of the tokens before the first ``[n]`` (all of them if it opens with
    one), as ``rag.answer.confidence`` reads them."""
    if probs is None or not probs.tokens:
        return None, None, None
    answer: list[float] = []
    for text, p in probs.tokens:
        if text.lstrip().startswith("["):
            break
        answer.append(p)
    answer = answer or [p for _, p in probs.tokens]
    return (min(answer), sum(answer) / len(answer),
            sum(math.log(max(p, 1e-9)) for p in answer) / len(answer))


def question_type(question: str) -> str | None:
    """What kind of thing the question asks for: person, date, number, place, or None (what, which, why ...)."""
    for kind, pattern in (("date", _WHEN), ("number", _HOW_MANY), ("place", _WHERE), ("person", _WHO)):
        if pattern.search(question):
            return kind
    return None


def type_matches(kind: str, answer: str) -> bool:
    """Whether the answer is of the kind asked: a date or year, a number, a capitalised name."""
    text = answer_text(answer)
    if kind == "date":
        return bool(number_values(text) or _MONTHS & set(re.findall(r"[a-z]+", text.lower())))
    if kind == "number":
        return bool(number_values(text))
    # a person or a place: some capitalised word past the first (which any sentence opens with), or a short
    # answer that is a capitalised name itself
    words = text.split()
    return any(w[:1].isupper() for w in words[1:]) or (len(words) <= 4 and any(w[:1].isupper() for w in words))


def word_distance(question: str, answer: str, passages: Sequence[str],
                  idf: Callable[[list[str]], list[float]]) -> float:
    """Words between the answer and the nearest rare question word, in the sentence holding most of the answer."""
    question_words = set(tokenize(question))
    new = [w for w in tokenize(answer_text(answer)) if w not in question_words]
    if not new or not question_words:
        return DISTANCE_CAP
    terms = sorted(question_words)
    weights = dict(zip(terms, idf(terms), strict=True))
    ranked = sorted(terms, key=lambda t: -weights[t])
    rare = set(ranked[: max(2, len(ranked) // 2)])
    best: tuple[float, float] | None = None  # (share of the answer's words found, -distance)
    for passage in passages:
        for sentence in split_sentences(passage):
            stems = tokenize(sentence)
            found = [i for i, w in enumerate(stems) if w in new]
            share = len({stems[i] for i in found}) / len(set(new))
            if share < 0.5:
                continue
            anchors = [i for i, w in enumerate(stems) if w in rare]
            distance = min((abs(a - f) for a in anchors for f in found), default=DISTANCE_CAP)
            candidate = (share, -min(float(distance), DISTANCE_CAP))
            if best is None or candidate > best:
                best = candidate
    return -best[1] if best else DISTANCE_CAP


_LEADING = re.compile(r"^(the|a|an|in|on|at|by|of|to|from|about|around|approximately)\s+")


def _plain_words(text: str) -> list[str]:
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


def verbatim_share(answer: str, passages: Sequence[str]) -> float:
    """The longest run of the answer's words found word for word in one of the passages, over the answer's words."""
    words = _plain_words(_LEADING.sub("", " ".join(_plain_words(answer_text(answer)))))
    if not words:
        return 0.0
    texts = [f" {' '.join(_plain_words(p))} " for p in passages]
    best = 0
    for i in range(len(words)):
        for j in range(len(words), i + best, -1):  # the longest run from i first; shorter ones cannot beat best
            if any(f" {' '.join(words[i:j])} " in t for t in texts):
                best = j - i
                break
    return best / len(words)


def repeats_question(question: str, answer: str) -> bool:
    """Whether every content word of the answer is already in the question (and it has some)."""
    content = tokenize(answer_text(answer))
    return bool(content) and set(content) <= set(tokenize(question))


_NUMBER_WORD = re.compile(r"\b(" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r")\b", re.IGNORECASE)


def what_it_says(reply: str) -> set[str]:
    """A reply's content: its stemmed content words and its numbers by value, so "Four" and "4 [1]." say the same
    and "7,000,000" and "4,700,000" do not (the keyword tokenizer drops one-digit numbers and splits "7,000,000"
    into "000"s, and alone it would count a bare number as saying nothing)."""
    text = answer_text(reply)
    numbers = {f"#{value:.12g}" for value in number_values(text)}
    words = {w for w in tokenize(_NUMBER_WORD.sub(" ", text)) if not w.isdigit()}
    return numbers | words


def agreement(first: str, second: str) -> float:
    """The share of what the second reply says (content words and numbers) that the first answer says too (1 when
    the second says nothing)."""
    said, again = what_it_says(first), what_it_says(second)
    return len(again & said) / len(again) if again else 1.0


def consistency(answer: str, samples: Sequence[str]) -> float:
    """The mean ``agreement`` of sampled replies with the answer (1 when there are none)."""
    return sum(agreement(answer, s) for s in samples) / len(samples) if samples else 1.0


def question_fit(logprobs: Sequence[float]) -> float | None:
    """The question's mean token log-probability read back after the passages and the answer: an answer to this
    question makes its words likely; a sure answer to another question ("Lady Gaga" sang the anthem, asked who
    signed it) makes some of them unlikely. None without tokens."""
    return sum(logprobs) / len(logprobs) if logprobs else None


@dataclass(frozen=True)
class Cited:
    """A passage given to the model, as features read it: its retrieval rank and fused score, whether cited."""

    rank: int
    score: float
    cited: bool


def answer_features(*, question: str, answer: str, passages: Sequence[str], cited: Sequence[Cited], top_score: float,
                    top_k: int, evidence: Evidence, grounding: Grounding, support: Support,
                    confidence: Confidence | None, probs: TokenProbs | None,
                    idf: Callable[[list[str]], list[float]], second_reply: str | None = None,
                    samples: Sequence[str] | None = None, asked_back: Sequence[float] | None = None) -> Features:
    p_min, p_mean, p_log = probability_features(probs)
    text = answer_text(answer)
    cited_passages = [c for c in cited if c.cited]
    best = min(cited_passages, key=lambda c: c.rank) if cited_passages else None
    question_words = set(tokenize(question))
    content = tokenize(text)
    kind = question_type(question)
    return Features(
        p_min=p_min, p_mean=p_mean, p_log_mean=p_log,
        grounded=float(grounding.verified), missing_terms=float(len(grounding.missing)),
        supported=float(support.answers), support_coverage=support.coverage,
        sure=float(confidence is None or confidence.sure),
        evidence=evidence.confidence, evidence_dense=evidence.dense, evidence_coverage=evidence.coverage,
        cited_rank=float(best.rank if best else top_k + 1),
        cited_score=best.score / top_score if best and top_score > 0 else 0.0,
        cited_count=float(len(cited_passages)),
        answer_words=float(len(_WORD.findall(text))),
        question_overlap=sum(w in question_words for w in content) / len(content) if content else 1.0,
        type_asked=float(kind is not None),
        type_mismatch=float(kind is not None and not type_matches(kind, text)),
        distance=word_distance(question, text, passages, idf),
        agreement=agreement(answer, second_reply) if second_reply is not None else None,
        verbatim=verbatim_share(answer, [p for p, c in zip(passages, cited, strict=False) if c.cited] or passages),
        repeats_question=float(repeats_question(question, text)),
        consistency=consistency(answer, samples) if samples is not None else None,
        question_fit=question_fit(asked_back) if asked_back is not None else None,
    )
