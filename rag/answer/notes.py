"""The note shown above an answer: why it was refused or withheld, or what in it the sources do not confirm.

It reads an answer as ``Answer.to_json()`` gives it (and as conversations keep it), so the page, the Markdown
export and a reopened conversation show the same words.
"""

from __future__ import annotations

from rag.answer.safe_markdown import text_markdown


def answer_note(answer: dict[str, object]) -> tuple[str, str] | None:
    """The warning shown above an answer (``Answer.to_json()``), as Markdown and an icon: why it was refused, or which
    of its names and numbers none of the passages it cites contains; None for a verified answer."""
    terms: list[object] = answer.get("unverified") or []  # type: ignore[assignment]
    checks: list[object] = answer.get("checks") or []  # type: ignore[assignment]
    if answer.get("refused_by") == "check":  # withheld (unverified_answers="withhold"): say why, show its words
        reasons = [*(f"none of its passages says “{term}”" for term in terms), *checks]
        candidate = text_markdown(str(answer.get("candidate")))
        return (f"**Not confirmed by your documents.** The model answered “{candidate}”, but "
                f"{text_markdown('; '.join(str(r) for r in reasons))}. Check the passages below.",
                ":material/report:")
    if answer.get("refused"):
        why = ("The model read the passages below and found no answer in them." if answer.get("refused_by") == "model"
               else "None of the passages holds evidence for an answer, so the model was not asked to guess. The "
                    "closest passages are below.")
        return f"**Not found in your documents.** {why}", ":material/search_off:"
    if answer.get("verified") is False and terms:
        missing = ", ".join(f"“{text_markdown(str(term))}”" for term in terms)
        citations: list[dict[str, object]] = answer.get("citations") or []  # type: ignore[assignment]
        others = ", and the other passages it was given," if any(not c.get("cited") for c in citations) else ""
        return (f"**Not found in your sources:** {missing}. The answer states this, but none of the passages it cites "
                f"says it: check them{others} below before relying on it.", ":material/report:")
    if answer.get("verified") is False:
        why = "; ".join(text_markdown(str(reason)) for reason in checks)
        return (f"**Check this answer against the sources:** {why}.", ":material/report:")
    return None
