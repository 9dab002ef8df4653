"""Prompt texts live beside this file as plain text, so they can be read and edited without touching code."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

_HERE = Path(__file__).resolve().parent


@cache
def load(name: str) -> str:
    """The prompt ``name`` (file ``rag/prompts/<name>.txt``), without its trailing newline."""
    return (_HERE / f"{name}.txt").read_text(encoding="utf-8").rstrip("\n")


@cache
def load_turns(name: str) -> tuple[tuple[str, str], ...]:
    """Worked examples written as chat turns: ``### user`` / ``### assistant`` lines open each (role, text)."""
    turns: list[tuple[str, str]] = []
    for block in re.split(r"^### (user|assistant)[ \t]*$", load(name), flags=re.MULTILINE)[1:]:
        if block in ("user", "assistant"):
            turns.append((block, ""))
        else:
            turns[-1] = (turns[-1][0], block.strip("\n"))
    if not turns or len(turns) % 2 or any(role != ("user", "assistant")[i % 2] for i, (role, _) in enumerate(turns)):
        raise ValueError(f"rag/prompts/{name}.txt: expected alternating '### user' / '### assistant' turns")
    return tuple(turns)
