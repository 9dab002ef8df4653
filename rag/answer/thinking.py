"""Hide a reasoning model's <think>…</think> block, from a whole text or from a stream of deltas."""

from __future__ import annotations

import re
from collections.abc import Iterator

_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)


def strip_thinking(text: str) -> str:
    """``text`` without a reasoning model's <think>…</think> block (an unclosed one runs to the end)."""
    return _THINK.sub("", text)


def hide_thinking(deltas: Iterator[str]) -> Iterator[str]:
    """Drop a reasoning model's <think>…</think> block from a stream, even when tags are split across deltas."""
    buffer = ""
    for delta in deltas:
        buffer += delta
        if "<think>" in buffer and "</think>" not in buffer:
            continue  # inside a thought: hold everything back
        if "<" in buffer[-8:] and not buffer.endswith(">"):
            tail = buffer[buffer.rfind("<"):]
            if "<think>".startswith(tail):
                visible = strip_thinking(buffer[: -len(tail)])
                buffer = tail
                if visible:
                    yield visible
                continue
        visible = strip_thinking(buffer)
        buffer = ""
        if visible:
            yield visible
    visible = strip_thinking(buffer) if "<think>" in buffer else buffer
    if visible:
        yield visible
