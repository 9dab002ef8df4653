"""The note shown above an answer: why it was refused or withheld, or what in it the sources do not confirm.

It reads an ``AnswerResult`` (as the pipeline gives it and as conversations keep it), so the page, the Markdown
export and a reopened conversation show the same words. How a note looks (its icon, its colour) is the page's
business: a note only says which kind it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rag.answer.result import AnswerResult
from rag.answer.safe_markdown import text_markdown

NoteKind = Literal["withheld", "not_found", "unconfirmed", "check", "verified"]
VERIFIED = "**Checked against your sources:** the passages it cites support this answer."


@dataclass(frozen=True)
class Note:
    kind: NoteKind
    markdown: str


def answer_note(answer: AnswerResult) -> Note | None:
    """The note shown above an answer: why it was refused, or which of its names and numbers none of the passages
    it cites contains, or what else to check (when calibrated, the reason that weighed most against it); a short
    positive one for an answer the model's calibrator verified; None for one the rule-based checks passed (a model
    without a calibrator: they miss too many wrong answers to call it checked)."""
    terms, checks = answer.unverified, answer.checks
    if answer.withheld:  # unverified_answers="withhold": say why, show its words
        reasons = [*(f"none of its passages says “{term}”" for term in terms), *checks]
        candidate = text_markdown(str(answer.candidate))
        return Note("withheld", f"**Not confirmed by your documents.** The model answered “{candidate}”, but "
                                f"{text_markdown('; '.join(reasons))}. Check the passages below.")
    if answer.refused:
        why = ("The model read the passages below and found no answer in them." if answer.refused_by == "model"
               else "None of the passages holds evidence for an answer, so the model was not asked to guess. The "
                    "closest passages are below.")
        return Note("not_found", f"**Not found in your documents.** {why}")
    if not answer.verified and terms:
        missing = ", ".join(f"“{text_markdown(term)}”" for term in terms)
        others = ", and the other passages it was given," if any(not c.cited for c in answer.citations) else ""
        return Note("unconfirmed", f"**Not found in your sources:** {missing}. The answer states this, but none of "
                                   f"the passages it cites says it: check them{others} below before relying on it.")
    if not answer.verified:
        why = "; ".join(text_markdown(reason) for reason in checks)
        return Note("check", f"**Check this answer:** {why}.")
    if answer.calibrated and not answer.error:
        return Note("verified", VERIFIED)
    return None
