"""The rule that labels the verifier's records right or wrong (bench/verifier.py): every figure in
docs/verifier.md rests on it, so its edges are pinned here."""

from __future__ import annotations

import sys
from pathlib import Path

_path = list(sys.path)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from verifier import relabel, right_in_substance  # noqa: E402

sys.path[:] = _path  # bench's module names (llm, page, ...) stay out of the other tests' way


def test_right_in_substance() -> None:
    assert right_in_substance("The Labor Party [1].", ["Australian Labor Party"]), "most of the reference's words"
    assert right_in_substance("4 [1].", ["four"]), "the same number in digits"
    assert right_in_substance("760 mm [1].", ["760 mm (2 ft 6 in) narrow gauge lines"]), "part of a long reference"
    assert right_in_substance("Amazonia [1].", ["also known in English as Amazonia or the Amazon Jungle,"])
    assert right_in_substance("7,000,000 square kilometres (2,700,000 sq mi) [1].",
                              ["7,000,000 square kilometres (2,70"]), "a reference the data set cut off"
    assert not right_in_substance("7,000,000 square kilometres [1].", ["5,500,000 square kilometres (2,70"])
    assert not right_in_substance("1960 Olympics [1].", ["1964 Olympics"]), "another number"
    assert not right_in_substance("Lady Gaga [1].", ["Marlee Matlin"])
    assert not right_in_substance("Four interceptions [2].", ["two."])
    assert not right_in_substance("[1].", ["four"]), "an answer that says nothing is not part of anything"


def test_records_are_labelled_by_the_rule_as_it_is_now() -> None:
    old = {"answer": "4 [1].", "references": ["four"], "verdict": "incorrect", "label": "wrong"}
    assert relabel(old)["label"] == "right"
    refused = {"answer": "The documents do not say.", "references": ["four"], "verdict": "refused", "label": None}
    assert relabel(refused)["label"] is None, "a refusal is not an answer"
    strict = {"answer": "Agnes Holloway [1].", "references": ["Holloway"], "verdict": "correct", "label": "right"}
    assert relabel(strict)["label"] == "right"
