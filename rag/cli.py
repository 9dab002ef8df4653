"""What every command shares: ``--index DIR`` and ``--json``; JSON on stdout, people-facing text on stderr."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rag.settings import get_settings


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


def print_json(document: Any) -> None:
    json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    sys.stdout.flush()


def say(text: str = "") -> None:
    """Human text goes to stderr so that stdout stays clean for --json."""
    print(text, file=sys.stderr)
