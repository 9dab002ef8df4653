"""The groundedness check and the agent's number provenance, on their own (the end-to-end tests use them on real
answers: tests/test_default_model.py, tests/test_agent.py)."""

from __future__ import annotations

import pytest

from rag.agent.provenance import unobserved_numbers
from rag.answer.citations import recite
from rag.answer.grounding import check_grounding

PASSAGE = ("Tesla died on 7 January 1943 in New York. In 1960 the General Conference on Weights and Measures named "
           "the SI unit of magnetic flux density the tesla. The Normans raised 12,000 men and four ships. "
           "Kurt Gödel taught there.")


@pytest.mark.parametrize("answer", [
    "Tesla died on 7 January 1943 [1].",
    "He died in New York in 1943 [1].",
    "The Norman army had 12000 men and 4 ships [1].",  # 12,000 as 12000; "four" as 4; Normans as Norman
    "Gödel’s lectures [1].",  # typographic apostrophe, accents
    "The tesla was named in 1960 [1].",
    "When did Tesla die? In 1943 [1].",
])
def test_answers_that_say_what_the_passage_says_are_verified(answer: str) -> None:
    check = check_grounding(answer, [PASSAGE])
    assert check.verified and check.missing == () and check.checked >= 1, check


@pytest.mark.parametrize(("answer", "missing"), [
    ("Tesla died in 1944 [1].", ("1944",)),
    ("The book was written by Paul Krugman [2].", ("Paul", "Krugman")),
    ("Tesla died in Croatia on 7 January 1943.", ("Croatia",)),
    ("They raised 15,000 men.", ("15,000",)),
])
def test_invented_names_and_numbers_are_named(answer: str, missing: tuple[str, ...]) -> None:
    check = check_grounding(answer, [PASSAGE])
    assert not check.verified and check.missing == missing


def test_the_question_counts_as_a_source_and_lower_case_paraphrase_is_not_checked() -> None:
    assert check_grounding("Ada Lovelace was born in 1815.", [PASSAGE], question="Was Ada Lovelace born in 1815?").verified
    assert check_grounding("it was a long and productive life", [PASSAGE]).checked == 0
    assert check_grounding("See [1]. Yes, both were there.", [PASSAGE]).verified, "sentence openers are not names"


def test_numbers_the_agent_did_not_observe() -> None:
    seen = ["How many years passed?", "[1] (a.md) The bridge opened in 1873 and closed in 1962; it had four lanes."]
    assert unobserved_numbers("1962 - 1873", seen) == []
    assert unobserved_numbers("1962 - 1874", seen) == ["1874"]
    assert unobserved_numbers("(1962 - 1873) * 12 / 4 + 100", seen) == [], "small constants and 100 are free"
    assert unobserved_numbers("round(88.5, 2)", seen) == ["88.5"]
    epidemics = ["thirty-seven epidemics between 1701 and 1750, and an additional thirty-one between 1751 and 1800"]
    assert unobserved_numbers("37 + 31", epidemics) == [], "compound number words count"


def test_a_misnumbered_citation_is_mended_and_an_invented_name_is_not() -> None:
    passages = {1: "John Elway was 38 when he played in Super Bowl XXXIII for the Broncos.",
                2: "Peyton Manning became the oldest quarterback to start a Super Bowl at age 39.",
                3: "The Broncos beat the Patriots 20-18 in the AFC Championship Game."}
    question = "Who was the oldest quarterback before Manning?"
    assert recite("John Elway [2].", passages, [2], question) == [2, 1], "the passage holding the name is cited"
    assert recite("John Elway played for the Broncos [1].", passages, [1], question) == [1], "nothing lacking"
    assert recite("Clara Diaz [2].", passages, [2], question) == [2], "a name in no passage stays unsupported"
    assert recite("John Elway, 20-18 [2].", passages, [2], question) == [2, 1, 3], "each passage that adds a term"
    assert recite("John Elway.", passages, [], question) == [], "no citation: every passage is the source already"
