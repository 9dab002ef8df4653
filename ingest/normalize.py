"""Text normalisation shared by every loader, so that the same words always produce the same chunks."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable

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
# Typographic ligatures (U+FB00-FB06: ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ) as their letters: a PDF's "ﬁrst" is the word "first".
_LIGATURES = {0xFB00: "ff", 0xFB01: "fi", 0xFB02: "fl", 0xFB03: "ffi", 0xFB04: "ffl", 0xFB05: "st", 0xFB06: "st"}
_SPACES = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_SOFT_HYPHEN_BREAK = re.compile("\u00ad[ \t]*\n[ \t]*")  # a typesetter's break inside a word: always joined
# "exam-\nple"; never "Jean-\nPaul". Matched from a word's start only ((?<!\w)): tried from every letter of a long
# run (a hex dump, a DNA sequence), \w+ took time growing with the square of its length (a 1 MB run: most of an hour).
_HYPHEN_BREAK = re.compile(r"(?<!\w)(\w+)-\n[ \t]*([a-z]\w*)")
_WORD = re.compile(r"\w+")
_TRAILING = re.compile(r" +\n")
_LEADING = re.compile(r"\n +")
_MANY_BLANKS = re.compile(r"\n{3,}")


def normalize_text(text: str, words: Collection[str] | None = None) -> str:
    """NFC, one newline convention, no invisible characters, hyphenated line breaks mended, single spaces.

    A word hyphenated across a line break ("exam-\nple") is joined only when the joined word is one the document
    uses elsewhere (``words``, from ``document_words``; by default the words of ``text`` itself); otherwise the
    hyphen belongs to a compound and stays ("mean-\npooling" becomes "mean-pooling", not "meanpooling").
    """
    text = _clean(text)
    known = words if words is not None else document_words([text])
    text = _HYPHEN_BREAK.sub(lambda m: _mend(m, known), text)
    text = _MANY_BLANKS.sub("\n\n", text)
    return text.strip()


def document_words(texts: Iterable[str]) -> set[str]:
    """The lower-cased words of a document's texts, for ``normalize_text`` to tell a split word from a compound."""
    return {word.lower() for text in texts for word in _WORD.findall(_clean(text))}


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    for old, new in _NEWLINES.items():
        text = text.replace(old, new)
    text = _SOFT_HYPHEN_BREAK.sub("", text)
    text = text.translate(_INVISIBLE).translate(_LIGATURES)
    text = _SPACES.sub(" ", text)
    text = _TRAILING.sub("\n", text)
    return _LEADING.sub("\n", text)


def _mend(match: re.Match[str], words: Collection[str]) -> str:
    left, right = match.group(1), match.group(2)
    return left + right if (left + right).lower() in words else f"{left}-{right}"
