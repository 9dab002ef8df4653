"""Plain text in any encoding: UTF-8 (with or without BOM), UTF-16 with BOM, or the most likely legacy code page."""

from __future__ import annotations

from pathlib import Path

from ingest.loaders.base import LoadedDocument, LoadError, Record
from ingest.normalize import normalize_text


def decode_text(data: bytes) -> str:
    """Decode bytes as UTF-8 (with or without BOM), UTF-16 with BOM, or the most likely legacy encoding."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace")  # a file cut short loses its last character, not all
        damaged = text.count("\ufffd")
        if damaged and (damaged > len(text) // 100 or len(text) < 100):
            raise LoadError("the file starts like UTF-16 text (byte-order mark) but is not valid UTF-16")
        return text
    if _looks_binary(data):
        raise LoadError("this looks like binary data, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        raise LoadError("the text encoding could not be recognised (not UTF-8, nor a known legacy encoding)")
    # On short texts the detector cannot tell the single-byte Latin code pages apart; when Windows-1252 (the
    # commonest legacy encoding) reads the bytes about as cleanly as the top guess, take it.
    best = min(matches, key=lambda m: m.chaos)
    western = next((m for m in matches if m.encoding == "cp1252" and m.chaos <= best.chaos + 0.1), None)
    return str(western or best)


def _looks_binary(data: bytes) -> bool:
    sample = data[:8192]
    if b"\x00" in sample:
        return True
    control = sum(1 for byte in sample if byte < 32 and byte not in (9, 10, 12, 13))
    return control > len(sample) * 0.05


def load_txt(path: Path, data: bytes) -> LoadedDocument:
    text = normalize_text(decode_text(data))
    if not text:
        raise LoadError("the file holds no text")
    return LoadedDocument(path=path, kind="txt", records=[Record(text=text)])
