"""Is a computed number stated as what it is? A final answer's claims checked against the observations.

``rag.agent.provenance`` makes sure every number of a final answer was observed somewhere; that is not enough.
A small model computes ``14,250 - 6,100 = 8,150`` and then writes "the museum had 8,150 visitors in 2019": the
number was observed (the calculator gave it), but it is stated as the value the passages give for another thing
(2019 had 14,250 visitors). So a number that only a tool produced (it is in no passage and not in the question)
is read with its neighbours in the answer, the clause around it:

- a clause that says the number is a result (``fewer``, ``more``, ``difference``, ``total``, ``older``, ``years``
  ...) states it as what it is;
- otherwise, if a passage sentence pairs the same kind of thing (the word that follows the number: ``visitors``)
  with the same anchor (a number or name of the answer's clause that the passage sentence also holds: ``2019``)
  and a *different* number, the answer attached the computed number to the thing the passages give that other
  number for. That is a wrong claim, however right the arithmetic was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.agent.provenance import FREE_NUMBERS
from rag.answer.citations import split_sentences
from rag.answer.grounding import number_values, numbers_in
from rag.index.keyword import tokenize

_CLAUSE = re.compile(r"(?<!\d)[.;:!?()\n](?!\d)|,(?!\d{3})|\b(?:which|while|whereas|but|and|than|against)\b",
                     re.IGNORECASE)
_MARKER = re.compile(r"\[\d+(?:\s*[,;]\s*\d+)*\]")
_TOKEN = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|[^\W\d_][\w'-]*")
# Words that state a number as the result of a computation, not as a value read from a passage.
_RESULT_WORDS = frozenset(tokenize(
    "fewer more less lower higher difference differ total totals altogether combined sum together average mean "
    "increase increased decrease decreased rise rose fall fell drop dropped grew growth gain lost loss change "
    "longer shorter older younger bigger smaller larger greater earlier later after before between apart ago "
    "age aged old years times percent per ratio share remaining left over up down gap margin net additional "
    "extra"))


@dataclass(frozen=True)
class Misstated:
    """A computed number stated as the value the passages give for another thing."""

    number: str  # as the answer writes it
    thing: str  # the answer's words for it ("visitors in 2019")
    passage_value: str  # what the passages give for that thing

    @property
    def reason(self) -> str:
        return (f"the answer states {self.number} as {self.thing}, but the passages give {self.passage_value} "
                f"for that ({self.number} is a computed result)")


def _clauses(text: str) -> list[str]:
    return [c.strip() for c in _CLAUSE.split(_MARKER.sub(" ", text)) if c and c.strip()]


def _tokens(clause: str) -> list[str]:
    return _TOKEN.findall(clause)


def _value(token: str) -> float | None:
    found = numbers_in(token)
    return found[0][1] if len(found) == 1 and found[0][0] == token else None


def _anchors(tokens: list[str], skip: int) -> set[str]:
    """The clause's specifics other than the number at ``skip``: numbers, and capitalised words (names)."""
    return {t.replace(",", "") if _value(t) is not None else t.lower() for i, t in enumerate(tokens)
            if i != skip and (_value(t) is not None or (t[:1].isupper() and tokenize(t)))}


def _unit(tokens: list[str], at: int) -> tuple[str, str] | None:
    """The first word after the number that says what it counts, as written and stemmed ("14,250 visitors" ->
    ("visitors", "visitor"))."""
    for t in tokens[at + 1 : at + 3]:
        stems = tokenize(t) if _value(t) is None else []
        if stems:
            return t, stems[0]
    return None


def misstated_numbers(answer: str, passages: list[str], tool_results: list[str], question: str) -> list[Misstated]:
    """Computed numbers of ``answer`` (found in ``tool_results`` only) stated as what the passages give another
    number for."""
    passage_values = number_values("\n".join([*passages, question]))
    computed = number_values("\n".join(tool_results)) - passage_values - set(FREE_NUMBERS)
    if not computed:
        return []
    # A passage's whole sentence: its anchor often stands in another clause ("In 2018 a second vessel entered
    # service, and the ferry carried 231,900 passengers").
    passage_clauses = [_tokens(_MARKER.sub(" ", s)) for p in passages for s in split_sentences(p)]
    found: list[Misstated] = []
    last_unit: tuple[str, str] | None = None  # "182,400 passengers in 2017 and 49,500 in 2018": the second counts passengers
    for clause in _clauses(answer):
        tokens = _tokens(clause)
        stated_as_result = bool(_RESULT_WORDS & set(tokenize(clause)))
        for i, token in enumerate(tokens):
            value = _value(token)
            if value is None:
                continue
            unit = _unit(tokens, i) or last_unit
            last_unit = unit
            if value not in computed or stated_as_result:
                continue
            anchors = _anchors(tokens, i)
            if unit is None or not anchors:
                continue
            for other in passage_clauses:
                for j, candidate in enumerate(other):
                    other_value, other_unit = _value(candidate), _unit(other, j)
                    if (other_value is None or other_value == value or other_unit is None
                            or other_unit[1] != unit[1] or not anchors & _anchors(other, j)):
                        continue
                    rest = tokens[i + 1 :]
                    thing = " ".join(rest if rest[:1] == [unit[0]] else [unit[0], *rest])
                    found.append(Misstated(token, thing, candidate))
                    break
                else:
                    continue
                break
    return found


def misstated_note(found: list[Misstated]) -> str:
    """The observation that gives the model one chance to state its computed numbers as what they are."""
    wrong = "; ".join(f"it states {m.number} as {m.thing}, but the passages give {m.passage_value} for that"
                      for m in found)
    return (f"Error: your Final Answer attaches a computed number to the wrong thing: {wrong}. The calculator's "
            "result is not a value the passages give: say what it is (a difference, a total, ...) and keep the "
            "passages' own numbers for what they describe. Then give the Final Answer again.")
