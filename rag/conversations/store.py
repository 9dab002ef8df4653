"""Chats that are kept: one SQLite file beside the index, one row per conversation with its messages as JSON.

Every browser tab of the app reads and writes the same file, so a reload or a second tab finds a conversation
again. A save names the revision it started from; when another tab saved the same conversation in between, the
save becomes a new conversation instead of overwriting the other tab's messages, so nothing stored is lost.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revision INTEGER NOT NULL,
    questions INTEGER NOT NULL,
    messages TEXT NOT NULL
)
"""
MAX_TITLE = 60
UNTITLED = "New conversation"


@dataclass(frozen=True)
class ConversationInfo:
    """A conversation as the sidebar lists it."""

    id: str
    title: str
    updated_at: str
    questions: int


@dataclass
class Conversation:
    """A conversation as one tab holds it; ``id`` is None until it is first saved."""

    id: str | None = None
    title: str = UNTITLED
    messages: list[dict[str, Any]] = field(default_factory=list)
    revision: int = 0
    created_at: str = ""
    updated_at: str = ""
    saved: str = "[]"  # the messages as last loaded or saved (JSON), to tell whether there is anything to save

    def snapshot(self) -> str:
        return json.dumps(self.messages, ensure_ascii=False, default=str)


def title_for(messages: list[dict[str, Any]]) -> str:
    """A conversation's first name: its first question, shortened at a word; before any question, the files it
    began with ("Added report.pdf, notes.md")."""
    question = next((m["content"] for m in messages if m.get("kind") == "question"), "")
    return _shortened(" ".join(question.split())) if question.strip() else files_title(messages)


def files_title(messages: list[dict[str, Any]]) -> str:
    """"Added report.pdf, notes.md": the name of a conversation that so far only added files."""
    files = [name for m in messages if m.get("kind") == "upload" for name in m.get("files") or []]
    return _shortened("Added " + ", ".join(files)) if files else UNTITLED


def _shortened(title: str) -> str:
    if len(title) <= MAX_TITLE:
        return title
    return title[: MAX_TITLE - 1].rsplit(" ", 1)[0] + "…"


class ConversationStore:
    """The saved conversations of one index. Each call opens its own connection, so any thread may use it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as db:
            db.execute(_SCHEMA)

    def list(self, limit: int = 100) -> list[ConversationInfo]:
        """Newest first."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT id, title, updated_at, questions FROM conversations ORDER BY updated_at DESC, rowid DESC "
                "LIMIT ?", (limit,)
            ).fetchall()
        return [ConversationInfo(*row) for row in rows]

    def get(self, conversation_id: str) -> Conversation | None:
        with self._connection() as db:
            row = db.execute(
                "SELECT id, title, messages, revision, created_at, updated_at FROM conversations WHERE id = ?",
                (conversation_id,),
            ).fetchone()
        if row is None:
            return None
        return Conversation(row[0], row[1], _upgraded(json.loads(row[2])), row[3], row[4], row[5], saved=row[2])

    def open(self, conversation_id: str | None) -> Conversation:
        """The saved conversation, or a new empty one when there is none by that id (or no id)."""
        return (self.get(conversation_id) if conversation_id else None) or Conversation()

    def keep(self, conversation: Conversation) -> bool:
        """Save the conversation if its messages changed since it was loaded or saved; True when it was saved.

        The save names the revision the conversation was loaded at. One that is gone (deleted in another tab) is
        saved anew; one that another tab saved since is left as it is, and this one becomes a new conversation
        (its id and title change in place).
        """
        payload = conversation.snapshot()
        if not conversation.messages or payload == conversation.saved:
            return False
        now = _now()
        questions = sum(1 for m in conversation.messages if m.get("kind") == "question")
        with self._transaction() as db:
            row = None
            if conversation.id is not None:
                row = db.execute("SELECT title, revision FROM conversations WHERE id = ?",
                                 (conversation.id,)).fetchone()
            if row is not None and row[1] == conversation.revision:
                # one that began with an upload is named after its first question once it has one
                named_for_files = row[0] in (UNTITLED, files_title(conversation.messages))
                conversation.title = title_for(conversation.messages) if named_for_files else row[0]
                db.execute(
                    "UPDATE conversations SET title = ?, messages = ?, questions = ?, revision = ?, updated_at = ? "
                    "WHERE id = ?", (conversation.title, payload, questions, conversation.revision + 1, now,
                                     conversation.id),
                )
                conversation.revision += 1
            else:
                conversation.title = f"{row[0]} (copy)" if row is not None else title_for(conversation.messages)
                conversation.id, conversation.revision, conversation.created_at = uuid.uuid4().hex, 1, now
                db.execute(
                    "INSERT INTO conversations (id, title, created_at, updated_at, revision, questions, messages) "
                    "VALUES (?, ?, ?, ?, 1, ?, ?)",
                    (conversation.id, conversation.title, now, now, questions, payload),
                )
        conversation.updated_at, conversation.saved = now, payload
        return True

    def rename(self, conversation_id: str, title: str) -> bool:
        title = " ".join(title.split())[:MAX_TITLE]
        if not title:
            return False
        with self._transaction() as db:
            changed = db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
            return changed.rowcount > 0

    def delete(self, conversation_id: str) -> bool:
        with self._transaction() as db:
            return db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount > 0

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            yield db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write at a time: read, check and write under the same lock, all or nothing."""
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


_LEGACY_ICON = re.compile(r":material/[a-z_]+:\s*")


def _upgraded(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as this release keeps them. Releases before answers had a schema (``rag.answer.result``) wrote the
    page's icon codes into the text of their upload notes; answers themselves are read by ``AnswerResult.load``."""
    for message in messages:
        if message.get("kind") == "upload" and isinstance(message.get("content"), str):
            message["content"] = _LEGACY_ICON.sub("", message["content"])
    return messages
