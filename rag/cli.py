"""What every command shares: ``--index DIR`` and ``--json``; JSON on stdout, people-facing text on stderr."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import ValidationError

from rag.settings import Settings, bounds, get_settings

if TYPE_CHECKING:
    from rag.index.base import Index


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument(
        "--index",
        type=Path,
        default=None,
        metavar="DIR",
        help="index folder (default: $RAG_INDEX_DIR or data/index)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    return p


def settings_or_exit() -> Settings:
    """The settings from the environment, or exit 2 naming the variable that is wrong (``RAG_TOP_K=abc``), not a
    validation traceback."""
    try:
        return get_settings()
    except ValidationError as exc:
        say(f"error: invalid setting ({problems(exc, prefix='RAG_')})")
        raise SystemExit(2) from exc


def problems(exc: ValidationError, prefix: str = "") -> str:
    """``top_k: Input should be a valid integer``; with ``prefix="RAG_"`` the variable's name, ``RAG_TOP_K``."""
    def name(loc: tuple[Any, ...]) -> str:
        field = ".".join(map(str, loc))
        return f"{prefix}{field.upper()}" if prefix else field

    return "; ".join(f"{name(e['loc'])}: {e['msg']}" for e in exc.errors())


def open_index(args: argparse.Namespace, *, create: bool = False) -> Index:
    """The index named by --index (or the settings), or exit 2 with the reason it cannot be used: no index there
    (only a command that adds documents passes ``create`` and makes one; the others create nothing), a setting that
    is wrong, an index of another model or layout, a file that is not an index (or not ours), a folder we cannot
    write."""
    import sqlite3

    from rag.errors import EmbeddingError, StoreError
    from rag.index.store import open_store

    settings = settings_or_exit()  # read even with --index: search and ask use the other settings
    path = args.index if args.index is not None else settings.index_dir
    try:
        return open_store(path, create=create)
    except (StoreError, EmbeddingError) as exc:  # the index, or the embeddings server it needs to open
        say(f"error: {exc}")
        raise SystemExit(2) from exc
    except (sqlite3.DatabaseError, OSError) as exc:  # e.g. "file is not a database", or --index names a file
        say(f"error: {path}: cannot open the index ({exc})")
        raise SystemExit(2) from exc


def add_backend_option(p: argparse.ArgumentParser) -> None:
    from rag.llm import backend_names

    p.add_argument("--backend", choices=backend_names(), help="LLM backend (default: $RAG_LLM or embedded)")


def read_history(path: Path) -> list[dict[str, str]]:
    """A JSON list of {"role": "user"|"assistant", "content": str} messages, oldest first."""
    history = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(history, list) or not all(
        isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
        for m in history
    ):
        raise ValueError('expected a JSON list of {"role": "user" or "assistant", "content": "..."}')
    return history


def add_history_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--history", type=Path, metavar="FILE", help="earlier turns as a JSON list of messages")


def history_from(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[dict[str, str]]:
    """The ``--history`` file's messages (none without it), or exit 2 with the reason it cannot be used."""
    try:
        return read_history(args.history) if args.history else []
    except (OSError, ValueError) as exc:
        p.error(f"--history {args.history}: {exc}")


def settings_with(p: argparse.ArgumentParser, **overrides: object) -> Settings:
    """The settings, with the options given on the command line (None: not given) taking precedence, validated
    like the environment is (``-k -1`` is refused with exit 2, naming the option's setting, not a traceback)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return settings_or_exit().changed(**given)
    except ValidationError as exc:
        p.error(f"invalid option ({problems(exc)})")


def add_k_option(p: argparse.ArgumentParser, what: str) -> None:
    """``-k N``: how many passages, within the one bound the settings declare for ``top_k`` (every command)."""
    low, high = bounds("top_k")
    p.add_argument("-k", type=int, metavar="N", help=f"{what} ({low:g}-{high:g}; default: $RAG_TOP_K or 5)")


def print_json(document: Any) -> None:
    json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    sys.stdout.flush()


def say(text: str = "") -> None:
    """Human text goes to stderr so that stdout stays clean for --json."""
    print(text, file=sys.stderr)


def run(main: Callable[[], int]) -> NoReturn:
    """Exit with ``main()``'s code; a reader that closes the pipe early (``| head``) ends the output quietly."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error as Python exits
        code = 1
    sys.exit(code)
