"""Split records into chunks sized in the embedding model's own word pieces, so the model never truncates one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingest.loaders import Record

# Paragraphs first, then lines, then sentences, then clauses, then words.
SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]


@dataclass(frozen=True)
class Chunk:
    text: str
    page: int | None
    section: str | None
    start: int  # character offsets within the record's frame: the page (PDF) or the whole document (TXT/MD)
    end: int
    n_tokens: int


class Splitter:
    def __init__(
        self,
        count_tokens: Callable[[str], int],
        *,
        chunk_tokens: int,
        overlap: int,
        max_tokens: int,
    ) -> None:
        if chunk_tokens > max_tokens:
            raise ValueError(f"chunk size {chunk_tokens} exceeds the embedding model's limit of {max_tokens} tokens")
        if overlap >= chunk_tokens:
            raise ValueError(f"overlap {overlap} must be smaller than the chunk size {chunk_tokens}")
        # The splitter asks for the length of the same piece several times (to test it, to merge it, to drop it
        # from an overlap, to check the chunk); each distinct text is tokenized once.
        self.count_tokens: Callable[[str], int] = lru_cache(maxsize=16384)(count_tokens)
        self.max_tokens = max_tokens
        self._splitter = self._make(chunk_tokens, overlap)
        self._fallback = self._make(max_tokens // 2, 0)

    def _make(self, size: int, overlap: int) -> RecursiveCharacterTextSplitter:
        return RecursiveCharacterTextSplitter(
            separators=SEPARATORS,
            keep_separator="end",
            chunk_size=size,
            chunk_overlap=overlap,
            length_function=self.count_tokens,
        )

    def split(self, records: list[Record]) -> list[Chunk]:
        chunks: list[Chunk] = []
        for record in records:
            for text, start in self._pieces(record.text):
                begin = record.offset + start
                chunks.append(
                    Chunk(
                        text=text,
                        page=record.page,
                        section=record.section,
                        start=begin,
                        end=begin + len(text),
                        n_tokens=self.count_tokens(text),
                    )
                )
        return chunks

    def _pieces(self, text: str) -> list[tuple[str, int]]:
        """Chunks with their offsets in ``text``; any chunk still over the model's limit is split again."""
        out: list[tuple[str, int]] = []
        cursor = 0
        for piece in self._splitter.split_text(text):
            start = _locate(text, piece, cursor)
            cursor = start + 1
            if self.count_tokens(piece) <= self.max_tokens:
                out.append((piece, start))
                continue
            inner = 0
            for sub in self._fallback.split_text(piece):
                sub_start = _locate(piece, sub, inner)
                inner = sub_start + 1
                out.append((sub, start + sub_start))
        return out


def _locate(text: str, piece: str, cursor: int) -> int:
    found = text.find(piece, cursor)
    if found < 0:  # whitespace stripping can shift a piece before the cursor when chunks overlap
        found = text.find(piece)
    return max(found, 0)
