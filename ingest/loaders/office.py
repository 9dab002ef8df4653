"""What Word and PowerPoint files share: a zip package, or (encrypted, or from before 2007) an OLE container.

Office encrypts a document with a password by wrapping it in an OLE compound file with an ``EncryptionInfo``
stream; a binary .doc/.ppt renamed to .docx/.pptx is an OLE file too. Both are told apart from a damaged zip.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TypeVar

from ingest.loaders.base import LoadError

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
T = TypeVar("T")


def open_package(data: bytes, opener: Callable[[io.BytesIO], T], *, app: str, suffix: str) -> T:
    """``opener`` applied to the file's bytes, or a LoadError naming what is wrong with the file."""
    if data.startswith(_OLE_MAGIC):
        raise LoadError(_ole_reason(data, app, suffix))
    if not data.startswith(b"PK"):
        raise LoadError(f"not a {app} file (a {suffix} file is a zip package, and this one is not)")
    try:
        return opener(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - zip, XML and package errors all mean a damaged file here
        raise LoadError(f"the {app} file is corrupt or incomplete ({type(exc).__name__}: {exc})") from exc


def _ole_reason(data: bytes, app: str, suffix: str) -> str:
    import olefile

    try:
        encrypted = olefile.OleFileIO(data).exists("EncryptionInfo")
    except OSError:
        encrypted = False
    if encrypted:
        return f"the {app} file is password-protected; remove the password in {app} and try again"
    return f"an old binary {app} file (before 2007) renamed {suffix}; save it as {suffix} in {app} and try again"
