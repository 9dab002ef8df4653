"""Is the answer grounded? Every name, number and date it states must occur in the sources it was given.

    check = check_grounding("Tesla died on 7 January 1943 [1].", [passage_text], question="When did Tesla die?")
    check.verified, check.missing      # True, ()  -- or False, ("1944",) when the year is in no source

The sources are the passages the answer cites (all passages it was given when it cites none), in agent mode also
the tool results; the question counts too (restating it invents nothing). What is checked, after the ``[n]``
markers are removed:

- numbers (``1943``, ``3.5``, ``12,000``, ``1990s``), compared as numbers: ``12000`` matches ``12,000``, and a
  digit matches its word in the source (``4`` and ``four``); years are numbers, so dates are covered;
- names: capitalised words (``Tesla``, ``January``, ``New York``), compared as stemmed words (``Normans`` matches
  ``Norman``) without accents; capitalised function words at a sentence start (``The``, ``He``) are not names.

A paraphrase in lower case is not checked: the point is to catch invented specifics (a wrong year, an author
who is in no passage), which is what small models invent; ``bench/answer.py`` counts how many wrong and how many
correct answers it flags.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from rag.index.keyword import tokenize

_MARKER = re.compile(r"\[\d+(?:\s*[,;]\s*\d+)*\]")
_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])\d+(?:\.\d+)?")
_NAME = re.compile(r"\b[^\W\d_][\w'’\-]*", re.UNICODE)
NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000, "million": 10**6,
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "half": 0.5, "dozen": 12,
}
# Words that open sentences without naming anything (the stop list of rag.index.keyword has the rest).
_OPENERS = frozenset("see yes both because however although after before during since while there here then thus "
                     "therefore today first finally many most according based unlike like following due instead "
                     "overall note answer".split())
_TENS = {20, 30, 40, 50, 60, 70, 80, 90}
_UNITS = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}


@dataclass(frozen=True)
class Grounding:
    verified: bool
    missing: tuple[str, ...] = ()  # names and numbers of the answer found in no source
    checked: int = 0  # how many names and numbers were checked

    def to_json(self) -> dict[str, object]:
        return {"verified": self.verified, "unverified": list(self.missing)}


def _plain(text: str) -> str:
    """Accents off, typographic apostrophes straightened: ``Gödel’s`` -> ``Godel's``."""
    decomposed = unicodedata.normalize("NFKD", text.replace("’", "'"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def numbers_in(text: str) -> list[tuple[str, float]]:
    """Each number written in digits, as written and as a value (``"12,000"`` -> 12000.0)."""
    return [(m.group(0), float(m.group(0).replace(",", ""))) for m in _NUMBER.finditer(text)]


def number_values(text: str) -> set[float]:
    """Every number of ``text``, in digits or in words (``four`` -> 4.0, ``thirty-seven`` -> 37.0)."""
    values = {value for _, value in numbers_in(text)}
    words = re.findall(r"[a-z]+", text.lower())
    values.update(NUMBER_WORDS[w] for w in words if w in NUMBER_WORDS)
    for tens, unit in zip(words, words[1:]):  # "thirty-seven", "twenty one"
        if NUMBER_WORDS.get(tens, 0) in _TENS and 1 <= NUMBER_WORDS.get(unit, 0) <= 9 and unit in _UNITS:
            values.add(NUMBER_WORDS[tens] + NUMBER_WORDS[unit])
    return values


def _names(text: str) -> list[str]:
    """Capitalised words, hyphenated ones split (``Anglo-Saxon`` -> ``Anglo``, ``Saxon``)."""
    found = []
    for match in _NAME.finditer(text):
        for part in re.split(r"[-]", match.group(0)):
            if part[:1].isupper():
                found.append(part)
    return found


def check_grounding(answer: str, sources: Iterable[str], question: str = "") -> Grounding:
    """Whether every number and name in ``answer`` occurs in ``sources`` (or in ``question``)."""
    text = _plain(_MARKER.sub(" ", answer))
    support = _plain("\n".join([*sources, question]))
    missing: list[str] = []
    values = number_values(support)
    numbers = numbers_in(text)
    for written, value in numbers:
        if value not in values and written not in missing:
            missing.append(written)
    stems = set(tokenize(support))
    names = 0
    for name in _names(text):
        words = tokenize(name)  # a function word (The, He, In) tokenizes to nothing: not a name
        if not words or name.lower() in _OPENERS:
            continue
        names += 1
        if not all(w in stems for w in words) and name not in missing:
            missing.append(name)
    return Grounding(not missing, tuple(missing), len(numbers) + names)
