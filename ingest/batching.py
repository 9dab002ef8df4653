"""Vectors for the chunks of several files at once, in batches that span files and hold texts of similar length.

A model call costs as much as its longest text times the batch size (shorter texts are padded), so batches are
cut from the texts sorted by length: the short tail of every file travels together instead of being padded to a
full chunk next to it. Vectors already in the index are reused (an edited file re-embeds only its edits), and a
text that appears several times in the window is embedded once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rag.index.base import Index
from rag.index.embedder import Embedder
from rag.index.records import sha256_text

GroupProgress = Callable[[int, int, int], None]  # (group index, texts done, texts in the group)


def embed_groups(
    embedder: Embedder,
    store: Index,
    groups: Sequence[Sequence[str]],
    lengths: Sequence[Sequence[int]],
    *,
    batch_size: int,
    on_progress: GroupProgress | None = None,
) -> list[list[np.ndarray]]:
    """One vector per text of each group (a file's chunks), in the groups' order. ``lengths`` sorts the batches
    (token counts from the splitter); ``on_progress`` hears about every group a batch moved forward."""
    hashes = [[sha256_text(text) for text in group] for group in groups]
    texts = {h: text for group, group_hashes in zip(groups, hashes, strict=True)
             for text, h in zip(group, group_hashes, strict=True)}
    size = {h: n for group_hashes, group_lengths in zip(hashes, lengths, strict=True)
            for h, n in zip(group_hashes, group_lengths, strict=True)}
    vectors: dict[str, np.ndarray] = store.vectors_by_sha(list(texts))
    todo = sorted((h for h in texts if h not in vectors), key=lambda h: size[h])
    report = _Progress(hashes, vectors, on_progress)
    report.all()
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        vectors.update(zip(batch, embedder.embed_batch([texts[h] for h in batch]), strict=True))
        report.touched(batch)
    return [[vectors[h] for h in group_hashes] for group_hashes in hashes]


class _Progress:
    """Tells each group how many of its texts have vectors, when that number changes."""

    def __init__(self, hashes: list[list[str]], vectors: dict[str, np.ndarray],
                 on_progress: GroupProgress | None) -> None:
        self.hashes = hashes
        self.vectors = vectors
        self.on_progress = on_progress
        self.groups_of: dict[str, set[int]] = {}
        for index, group_hashes in enumerate(hashes):
            for h in group_hashes:
                self.groups_of.setdefault(h, set()).add(index)

    def _tell(self, index: int) -> None:
        if self.on_progress is not None:
            group = self.hashes[index]
            self.on_progress(index, sum(h in self.vectors for h in group), len(group))

    def all(self) -> None:
        for index in range(len(self.hashes)):
            self._tell(index)

    def touched(self, batch: list[str]) -> None:
        for index in sorted(set().union(*(self.groups_of[h] for h in batch))):
            self._tell(index)
