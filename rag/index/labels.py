"""Short, unique labels for documents identified by their absolute paths.

A document's label starts as its *base*: its path relative to the folder it was ingested from (a single file or
an upload: its file name). When two documents would share a label, each of them is lengthened with its parent
folders' names, one at a time, until the labels differ: ``a/notes.md`` and ``b/notes.md``, while a third
``report.pdf`` that clashes with nothing stays ``report.pdf``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath


def _parts(path: str) -> list[str]:
    return [p for p in PurePosixPath(path.replace("\\", "/")).parts if p != "/"]


def _label(path: str, base: str, extra: int) -> str:
    """``base`` with ``extra`` more parent folders of ``path`` in front of it."""
    base_parts = _parts(base)
    parents = _parts(path)[: -len(base_parts)] if base_parts else _parts(path)
    return "/".join([*(parents[len(parents) - extra :] if extra else []), *base_parts])


def unique_labels(documents: dict[str, str]) -> dict[str, str]:
    """{absolute path: base} → {absolute path: label}, every label different and as short as it can be."""
    extra = dict.fromkeys(documents, 0)
    while True:
        labels = {path: _label(path, base, extra[path]) for path, base in documents.items()}
        groups: dict[str, list[str]] = defaultdict(list)
        for path, label in labels.items():
            groups[label].append(path)
        grew = False
        for paths in groups.values():
            if len(paths) < 2:
                continue
            for path in paths:
                if extra[path] + len(_parts(documents[path])) < len(_parts(path)):
                    extra[path] += 1
                    grew = True
        if not grew:
            return labels
