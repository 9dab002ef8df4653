"""Prompt texts live beside this file as plain text, so they can be read and edited without touching code."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_HERE = Path(__file__).resolve().parent


@cache
def load(name: str) -> str:
    """The prompt ``name`` (file ``rag/prompts/<name>.txt``), without its trailing newline."""
    return (_HERE / f"{name}.txt").read_text(encoding="utf-8").rstrip("\n")
