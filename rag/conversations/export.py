"""A conversation as a Markdown file: each question, its answer, and the sources with their passages.

The file may be opened in any Markdown viewer, so it is made as safe as the app's own page: answers go through
``answer_markdown`` (no image, link or raw HTML that reaches another host), everything else is escaped text.
"""

from __future__ import annotations

import re
from typing import Any

from rag.answer.notes import answer_note
from rag.answer.safe_markdown import answer_markdown, text_markdown
from rag.conversations.store import Conversation
from rag.index.records import page_unit

_ICON = re.compile(r":material/[a-z_]+:\s*")  # the app's icons, meaningless outside it
_NOT_IN_A_FILE_NAME = re.compile(r"[^\w\- ]+")


def file_name(title: str) -> str:
    """"When did Tesla die.md": a conversation's title, without characters a file name cannot hold."""
    return f"{' '.join(_NOT_IN_A_FILE_NAME.sub('', title).split()) or 'conversation'}.md"


def to_markdown(conversation: Conversation) -> str:
    lines = [f"# {text_markdown(conversation.title)}", ""]
    if conversation.created_at:
        lines += [f"*Started {conversation.created_at[:16].replace('T', ' ')} UTC.*", ""]
    for message in conversation.messages:
        kind = message.get("kind")
        if kind == "question":
            lines += ["## Question", "", text_markdown(message.get("content", "")), ""]
        elif kind == "answer":
            lines += _answer(message)
        else:
            lines += [_ICON.sub("", message.get("content", "")), ""]  # the app's own note, escaped when written
    return "\n".join(lines).rstrip() + "\n"


def _answer(message: dict[str, Any]) -> list[str]:
    answer = message.get("answer") or {}
    lines = ["### Answer", ""]
    if answer.get("refused") and answer.get("refused_by") != "check":
        lines += ["*Not found in your documents.*", ""]
    else:
        lines += [answer_markdown(message["content"]), ""] if message.get("content") else []
        if note := answer_note(answer):  # the warning the app shows above an unconfirmed or withheld answer
            lines += [f"> {note[0]}", ""]
    if message.get("stopped"):
        lines += ["*(stopped before the end)*", ""]
    citations = answer.get("citations") or []
    if citations:
        heading = "Closest passages" if answer.get("refused") else "Sources"
        lines += [f"#### {heading}", ""]
        cited = any(c.get("cited") for c in citations)
        for citation in citations:
            page = f", {page_unit(str(citation['source']))} {citation['page']}" if citation.get("page") else ""
            page += " (given to the model, not cited)" if cited and not citation.get("cited") else ""
            passage = " ".join(str(citation.get("text", "")).split())
            where = text_markdown(f"{citation['source']}{page}")
            lines += [f"\\[{citation['n']}\\] **{where}**", "", f"> {text_markdown(passage)}", ""]
    return lines
