"""The page's own choices (model, search, agent mode) kept across reloads, in a small JSON file beside the kept
conversations. Never a key or a password: those stay in the environment or are typed again."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

KEPT = ("llm", "embedded_model", "llm_url", "llm_model", "temperature", "unverified_answers", "retrieval_mode",
        "top_k", "agent_mode")


def prefs_path(conversations_path: Path) -> Path:
    return conversations_path.with_name("page-settings.json")


def load_prefs(path: Path) -> dict[str, Any]:
    """What was chosen last time; nothing when the file is missing or unreadable (the defaults then apply)."""
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in kept.items() if k in KEPT} if isinstance(kept, dict) else {}


def save_prefs(path: Path, values: dict[str, Any]) -> None:
    """Write the choices aside, then rename: a reader never sees half a file."""
    kept = {k: v for k, v in values.items() if k in KEPT}
    if load_prefs(path) == kept:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".page-settings-")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(kept, handle, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
