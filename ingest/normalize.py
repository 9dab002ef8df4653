"""Text normalisation shared by every loader, so that the same words always produce the same chunks."""

from __future__ import annotations

import re
import unicodedata

# Line and paragraph separators that editors, PDFs and Windows leave behind.
_NEWLINES = {
    "\r\n": "\n",
    "\r": "\n",
    "\u2028": "\n",  # LINE SEPARATOR
    "\u0085": "\n",  # NEXT LINE
    "\u000b": "\n",  # vertical tab
    "\u2029": "\n\n",  # PARAGRAPH SEPARATOR
    "\u000c": "\n\n",  # form feed (page break in text exports)
}
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))  # soft hyphen, zero widths, BOM
_SPACES = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_HYPHEN_BREAK = re.compile(r"(\w)-\n[ \t]*([a-z])")  # "exam-\nple" -> "example"; keeps "Jean-\nPaul"
_TRAILING = re.compile(r" +\n")
_LEADING = re.compile(r"\n +")
_MANY_BLANKS = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC, one newline convention, no invisible characters, joined hyphenated line breaks, single spaces."""
    text = unicodedata.normalize("NFC", text)
    for old, new in _NEWLINES.items():
        text = text.replace(old, new)
    text = text.translate(_INVISIBLE)
    text = _SPACES.sub(" ", text)
    text = _TRAILING.sub("\n", text)
    text = _LEADING.sub("\n", text)
    text = _HYPHEN_BREAK.sub(r"\1\2", text)
    text = _MANY_BLANKS.sub("\n\n", text)
    return text.strip()
