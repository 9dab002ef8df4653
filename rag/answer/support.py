"""Does the answer answer *the question*? A check the name-and-number check (``grounding``) cannot make.

A small model's typical wrong answer is not invented: it is a real name or number taken from the wrong sentence
(asked who did the sign language, it names the singer of the same sentence's anthem; asked for interceptions, it
gives the points of the sentence before). Each answer is checked three ways against the passages it was given:

- it must say something the question does not (an answer that only restates the question says nothing);
- a "when" question needs a date or a number, a "how many/much/long" question a number;
- the words the answer adds must stand in a passage sentence whose neighbourhood (the sentence and the ones on
  either side) covers enough of the question: the IDF-weighted share of the question's words found there must
  reach ``MIN_QUESTION_COVERAGE``. An answer whose words only occur near other subjects is flagged.

A flagged answer is shown with a note and ``"verified": false`` (the reasons in ``"checks"``). The threshold was
chosen on the tuning half of xquad-dev (``bench/answer.py --half a``) and reported on the held-out half: the
README has both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag.answer.citations import split_sentences
from rag.answer.grounding import number_values
from rag.index.keyword import tokenize

MIN_QUESTION_COVERAGE = 0.4  # half A: flags 5 of 11 wrong answers and 3 of 28 correct ones (0.5: 6 and 6)
MIN_ANSWER_WORDS_FOUND = 0.6  # share of the answer's own words one sentence must hold to count as its source

_MARKER = re.compile(r"\[\d+(?:\s*[,;]\s*\d+)*\]")
# A follow-up's leading "and"/"but" ("and when was it built?") does not change what it asks.
_OPENING = r"^\W*(?:(?:and|but|also|so|then)\b[\s,]*)?"
_WHEN = re.compile(_OPENING + r"(when|what year|which year|in what year|in which year|what date|on what date|"
                   r"what century|what decade)\b", re.IGNORECASE)
_HOW_MANY = re.compile(_OPENING + r"(how many|how much|how long|how old|how far|how large|how big|how tall|"
                       r"what percent|what percentage)\b", re.IGNORECASE)
_MONTHS = frozenset("january february march april may june july august september october november december".split())


@dataclass(frozen=True)
class Support:
    answers: bool  # False: the answer restates the question, is of the wrong kind, or comes from elsewhere
    reasons: tuple[str, ...] = ()  # for people: why not
    coverage: float = 0.0  # the best question coverage around a sentence holding the answer's words


def check_support(question: str, answer: str, passages: Sequence[str],
                  idf: Callable[[list[str]], list[float]]) -> Support:
    """Whether ``answer`` (model output, ``[n]`` markers allowed) answers ``question`` from ``passages``."""
    answer = _MARKER.sub(" ", answer)
    question_words = sorted(set(tokenize(question)))
    # Only the question's words some passage uses can be found near an answer: one that none of them uses ("how
    # long" answered by "2 minutes", "temperature" by "80 °C") says nothing about which sentence the answer is from.
    used = set().union(*(tokenize(p) for p in passages)) if passages else set()  # headings too, not only sentences
    weighed = [w for w in question_words if w in used]
    reasons: list[str] = []
    if _WHEN.search(question) and not (number_values(answer) or _MONTHS & set(re.findall(r"[a-z]+", answer.lower()))):
        reasons.append("the question asks when, and the answer gives no date")
    if _HOW_MANY.search(question) and not number_values(answer):
        reasons.append("the question asks how many or how much, and the answer gives no number")
    new_words = [w for w in tokenize(answer) if w not in question_words]
    if not new_words:
        return Support(False, (*reasons, "the answer only restates the question"), 0.0)
    weights = dict(zip(weighed, idf(weighed), strict=True)) if weighed else {}
    total = sum(weights.values())
    coverage = 0.0 if total > 0 else 1.0  # a question of stop words only cannot be checked this way
    # Where the answer's words stand: one sentence; or, when no sentence holds enough of them, two sentences side by
    # side ("2 minutes at 80 °C" joins "water at 80 °C" and "steep for 2 minutes" for a question that asks both).
    sentences_of = [[set(tokenize(s)) for s in split_sentences(p)] for p in passages]  # once, for both spans
    found = False
    for span in (1, 2):
        for sentences in sentences_of:
            for i in range(len(sentences) - span + 1):
                words = set().union(*sentences[i : i + span])
                if sum(w in words for w in new_words) < MIN_ANSWER_WORDS_FOUND * len(new_words):
                    continue
                found = True
                around = set().union(*sentences[max(0, i - 1) : i + span + 1])
                if total > 0:
                    coverage = max(coverage, sum(v for w, v in weights.items() if w in around) / total)
        if found:
            break
    if coverage < MIN_QUESTION_COVERAGE:
        reasons.append("the sentence it answers from is about something other than what you asked")
    return Support(not reasons, tuple(reasons), coverage)
