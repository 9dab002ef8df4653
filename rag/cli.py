"""What every command shares: ``--index DIR`` and ``--json``; JSON on stdout, people-facing text on stderr."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from rag.settings import Settings, get_settings

if TYPE_CHECKING:
    from rag.index.store import Store


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


def index_dir(args: argparse.Namespace) -> Path:
    return args.index if args.index is not None else get_settings().index_dir


def open_index(args: argparse.Namespace) -> Store:
    """The index named by --index (or the settings), or exit 2 with the reason it cannot be used."""
    from rag.index.records import StoreError
    from rag.index.store import open_store

    try:
        return open_store(index_dir(args))
    except StoreError as exc:
        say(f"error: {exc}")
        raise SystemExit(2) from exc


def add_backend_option(p: argparse.ArgumentParser) -> None:
    from rag.llm import backend_names

    p.add_argument("--backend", choices=backend_names(), help="LLM backend (default: $RAG_LLM or embedded)")


def settings_with(p: argparse.ArgumentParser, **overrides: object) -> Settings:
    """The settings, with the options given on the command line (None: not given) taking precedence, validated
    like the environment is (``-k -1`` is refused with exit 2, naming the option's setting, not a traceback)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings.model_validate({**get_settings().model_dump(), **given})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        p.error(f"invalid option ({problems})")


def print_json(document: Any) -> None:
    json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    sys.stdout.flush()


def say(text: str = "") -> None:
    """Human text goes to stderr so that stdout stays clean for --json."""
    print(text, file=sys.stderr)
