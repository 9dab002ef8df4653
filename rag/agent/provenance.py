"""Where the agent's numbers come from: a number it computes with, or states in its answer, must have been observed.

Small models copy the wrong year from a neighbouring sentence, or one that is in no passage at all, into the
calculator. So before a ``calculator`` or ``python`` call runs, and before a final answer is accepted, every number
in it is looked up in what the run has seen: the question and every observation so far (passages and tool
results), numbers written as words included (``four`` covers ``4``). Constants that arithmetic needs on its own
(0 to 12, 24, 60, 100, 365, 1000) are free. A number from nowhere becomes an observation naming it, so the model
can search for the right one instead of computing with an invented one.
"""

from __future__ import annotations

from rag.answer.grounding import number_values, numbers_in

FREE_NUMBERS = frozenset({*range(13), 24, 60, 100, 365, 1000})
CHECKED_TOOLS = frozenset({"calculator", "python"})


def unobserved_numbers(text: str, seen: list[str]) -> list[str]:
    """The numbers of ``text`` (as written) that occur in none of ``seen`` and are not free constants."""
    values = number_values("\n".join(seen))
    missing: list[str] = []
    for written, value in numbers_in(text):
        if value not in FREE_NUMBERS and value not in values and written not in missing:
            missing.append(written)
    return missing


def unobserved_note(missing: list[str], *, final: bool) -> str:
    """The observation that tells the model which numbers it did not take from anywhere."""
    listed = ", ".join(missing)
    what = "Your Final Answer states" if final else "Your Action Input uses"
    return (f"Error: {what} {listed}, which is in no observation and not in the question. Take every number from "
            "the passages you found (search again if you need one)"
            + ("; a number you worked out yourself, compute with the calculator. Then give the Final Answer again."
               if final else ", then call the tool again with those numbers."))
