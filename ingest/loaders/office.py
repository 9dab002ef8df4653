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


def read_package(data: bytes, read: Callable[[io.BytesIO], T], *, app: str, suffix: str) -> T:
    """``read`` applied to the file's bytes, or a LoadError naming what is wrong with the file.

    python-docx and python-pptx parse lazily, so a damaged part can fail anywhere in ``read``, not only on opening:
    any error but ``read``'s own LoadError means a damaged file."""
    if data.startswith(_OLE_MAGIC):
        raise LoadError(_ole_reason(data, app, suffix))
    if not data.startswith(b"PK"):
        raise LoadError(f"not a {app} file (a {suffix} file is a zip package, and this one is not)")
    try:
        return read(io.BytesIO(data))
    except LoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - zip, XML and package errors all mean a damaged file here
        raise LoadError(f"the {app} file is corrupt or incomplete ({type(exc).__name__}: {exc})"[:500]) from exc


def _ole_reason(data: bytes, app: str, suffix: str) -> str:
    import olefile

    try:
        encrypted = olefile.OleFileIO(data).exists("EncryptionInfo")
    except Exception:  # noqa: BLE001 - a damaged OLE file: not known to be encrypted
        encrypted = False
    if encrypted:
        return f"the {app} file is password-protected; remove the password in {app} and try again"
    return f"an old binary {app} file (before 2007) renamed {suffix}; save it as {suffix} in {app} and try again"
