"""A conversation as a Markdown file: each question, its answer, and the sources with their passages."""

from __future__ import annotations

import re
from typing import Any

from rag.conversations.store import Conversation

_ICON = re.compile(r":material/[a-z_]+:\s*")  # the app's icons, meaningless outside it
_NOT_IN_A_FILE_NAME = re.compile(r"[^\w\- ]+")


def file_name(title: str) -> str:
    """"When did Tesla die.md": a conversation's title, without characters a file name cannot hold."""
    return f"{_NOT_IN_A_FILE_NAME.sub('', title).strip() or 'conversation'}.md"


def to_markdown(conversation: Conversation) -> str:
    lines = [f"# {conversation.title}", ""]
    if conversation.created_at:
        lines += [f"*Started {conversation.created_at[:16].replace('T', ' ')} UTC.*", ""]
    for message in conversation.messages:
        kind = message.get("kind")
        if kind == "question":
            lines += ["## Question", "", message.get("content", ""), ""]
        elif kind == "answer":
            lines += _answer(message)
        else:
            lines += [_ICON.sub("", message.get("content", "")), ""]
    return "\n".join(lines).rstrip() + "\n"


def _answer(message: dict[str, Any]) -> list[str]:
    answer = message.get("answer") or {}
    lines = ["### Answer", ""]
    if answer.get("refused"):
        lines += ["*Not found in your documents.*", ""]
    elif message.get("content"):
        lines += [message["content"], ""]
    if message.get("stopped"):
        lines += ["*(stopped before the end)*", ""]
    citations = answer.get("citations") or []
    if citations:
        heading = "Closest passages" if answer.get("refused") else "Sources"
        lines += [f"#### {heading}", ""]
        for citation in citations:
            page = f", page {citation['page']}" if citation.get("page") else ""
            passage = " ".join(str(citation.get("text", "")).split())
            lines += [f"[{citation['n']}] **{citation['source']}{page}**", "", f"> {passage}", ""]
    return lines
