"""A conversation as a Markdown file: each question, its answer, and the sources with their passages.

The file may be opened in any Markdown viewer, so it is made as safe as the app's own page: answers go through
``answer_markdown`` (no image, link or raw HTML that reaches another host), everything else is text escaped
where Markdown would read it (``file_markdown``), so a file name or a time reads as it is written.
"""

from __future__ import annotations

import re
from typing import Any

from rag.answer.notes import answer_note
from rag.answer.result import AnswerResult
from rag.answer.safe_markdown import answer_markdown, code_span, file_markdown
from rag.conversations.store import Conversation

_NOT_IN_A_FILE_NAME = re.compile(r"[^\w\- ]+")


def file_name(title: str) -> str:
    """"When did Tesla die.md": a conversation's title, without characters a file name cannot hold."""
    return f"{' '.join(_NOT_IN_A_FILE_NAME.sub('', title).split()) or 'conversation'}.md"


def to_markdown(conversation: Conversation) -> str:
    lines = [f"# {file_markdown(conversation.title)}", ""]
    if conversation.created_at:
        lines += [f"*Started {conversation.created_at[:16].replace('T', ' ')} UTC.*", ""]
    for message in conversation.messages:
        kind = message.get("kind")
        if kind == "question":
            lines += ["## Question", "", file_markdown(message.get("content", "")), ""]
        elif kind == "answer":
            lines += _answer(message)
        else:
            lines += [file_note(message.get("content", "")), ""]  # the app's own note (an upload's result)
    return "\n".join(lines).rstrip() + "\n"


_PAGE_ESCAPE = re.compile(r"\\([\\`*_{}\[\]<>#+|~$:!()&-])")  # what text_markdown escapes for the page
_PAGE_SPAN = re.compile(r"(?<!\\)(`+) (.+?) \1(?!`)")  # and an address it puts in a code span


def file_note(note: str) -> str:
    """The page's note on added files (``ui.sidebar.upload_note``: a bold summary, then ``- name: result`` lines,
    every name and reason escaped for the page, where ``:`` and ``-`` also start emoji codes and colours) as the
    export writes text: "- lighthouse-handbook.pdf: added", not "lighthouse\\-handbook.pdf". A line of another
    shape is kept as it was written (escaped for the page, so just as safe)."""

    def as_written(page_text: str) -> str:
        return file_markdown(_PAGE_ESCAPE.sub(r"\1", _PAGE_SPAN.sub(r"\2", page_text)))

    lines = []
    for line in note.split("\n"):
        if line.startswith("- "):
            lines.append("- " + as_written(line[2:]))
        elif line.startswith("**") and line.endswith("**") and not line.endswith("\\**") and len(line) > 4:
            lines.append(f"**{as_written(line[2:-2])}**")
        else:
            lines.append(line)
    return "\n".join(lines)


def _answer(message: dict[str, Any]) -> list[str]:
    answer = AnswerResult.load(message["answer"]) if message.get("answer") else None
    lines = ["### Answer", ""]
    if answer is not None and answer.refused and not answer.withheld:
        lines += ["*Not found in your documents.*", ""]
    else:
        lines += [answer_markdown(message["content"]), ""] if message.get("content") else []
        if answer is not None and (note := answer_note(answer)):  # the warning shown above an unconfirmed answer
            lines += [f"> {note.markdown}", ""]
    if message.get("stopped"):
        lines += ["*(stopped before the end)*", ""]
    if answer is not None and answer.citations:
        lines += [f"#### {'Closest passages' if answer.refused else 'Sources'}", ""]
        for citation in answer.citations:
            where = citation.where + (" (given to the model, not cited)"
                                      if answer.any_cited and not citation.cited else "")
            passage = " ".join(citation.text.split())
            lines += [f"\\[{citation.n}\\] **{file_markdown(where)}**", "", f"> {file_markdown(passage)}", ""]
    if answer is not None and answer.steps:  # the agent's trace: model-written, so escaped text throughout
        lines += ["#### Agent steps", ""]
        for i, step in enumerate(answer.steps, start=1):
            lines += [f"{i}. **{file_markdown(step.action or 'thought')}** {file_markdown(step.thought)}".rstrip()]
            lines += [f"   - input: {code_span(' '.join(step.input.split()))}"] if step.input else []
            lines += [f"   - observed: {code_span(' '.join(step.observation.split()))}"]
        lines += [""]
    return lines
