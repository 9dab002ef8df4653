"""Was the model sure of its answer? The probability it gave each word it wrote, a signal the text checks lack.

``rag.answer.grounding`` catches names and numbers in no passage; ``rag.answer.support`` catches answers taken
from a sentence about something else. Neither sees a small model hesitating between two names of the right
sentence. llama.cpp reports, for each token written (greedy decoding: the most probable one), the probability the
model gave it (``TokenProbs``); an answer whose least probable token, up to its first ``[n]`` citation, falls under
``MIN_TOKEN_PROBABILITY`` was a near coin-toss somewhere and is flagged.

The threshold was chosen on the tuning half of xquad-dev (Qwen2.5-Coder-1.5B, 94 answers: with the other checks it
flags 13 of 23 wrong answers and 15 of 71 correct ones, against 10 and 10 without it) and is reported on the
held-out half in docs/answers.md. vLLM reports the same through the OpenAI API's ``logprobs``; a server that reports no
probabilities is not checked this way.
"""

from __future__ import annotations

from dataclasses import dataclass

from rag.llm import TokenProbs

MIN_TOKEN_PROBABILITY = 0.3  # half A: 0.25 flags 12 of 23 wrong / 14 of 71 correct; 0.35: 15 / 20


@dataclass(frozen=True)
class Confidence:
    lowest: float  # the least probable token's probability, up to the first citation
    token: str  # that token's text, to show
    sure: bool

    @property
    def reason(self) -> str:
        return f"the model hesitated over “{self.token.strip()}” in its answer"


def answer_confidence(probs: TokenProbs | None) -> Confidence | None:
    """The answer's weakest token before its first ``[n]`` marker; None when the backend gave no probabilities."""
    if probs is None or not probs.tokens:
        return None
    answer: list[tuple[str, float]] = []
    for text, p in probs.tokens:
        if text.lstrip().startswith("["):
            break
        answer.append((text, p))
    if not answer:  # the answer is only a citation: score what there is
        answer = list(probs.tokens)
    token, lowest = min(answer, key=lambda tp: tp[1])
    return Confidence(lowest, token, lowest >= MIN_TOKEN_PROBABILITY)
