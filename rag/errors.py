"""The project's errors: one root, ``RagError``, and one family under it per part that can fail.

Catch a family where its failure is handled (``except StoreError``: the index is busy or of another model;
``except EmbeddingError``: the embeddings server is down), or ``RagError`` at an edge that reports any of the
project's own failures. Every message is fit to show a user: it names the thing and says why.

The families are defined here; the modules that raise them re-export them under their old names
(``rag.index.records.StoreError``, ``rag.llm.base.LLMError``, ``ingest.loaders.base.LoadError``, ...), and the
finer kinds (``LLMUnavailable``, ``EmbeddingServerError``, ``NoIndexError``, ...) sit beside the code raising them.
A family that existing code also catches as a built-in error keeps that built-in as a second base (``LLMError`` is
a ``RuntimeError``; ``UploadError``, ``DatasetError``, ``ToolInputError`` and ``CalculatorError`` are
``ValueError``s).
"""

from __future__ import annotations

__all__ = [
    "CalculatorError", "ClusterError", "DatasetError", "EmbeddingError", "LLMError", "LoadError", "RagError",
    "StoreError", "ToolInputError", "UploadError",
]


class RagError(Exception):
    """Any failure this project reports itself, with a message fit to show a user."""


class StoreError(RagError):
    """The index cannot be used as asked (no index there, locked by another writer, built with another model, ...)."""


class EmbeddingError(RagError):
    """The embedding model could not make vectors (its server is unreachable or answered wrongly): a network or
    model failure, not a storage one. Without vectors the index can be neither searched nor written, so it stops a
    command rather than failing every file one after the other."""


class ClusterError(RagError):
    """The cluster a fanned-out ingest runs on cannot be used (no scheduler answers at its address, it has no workers,
    a worker cannot run the ingest tasks): like the index being busy, it stops the run, not one file."""


class LLMError(RagError, RuntimeError):
    """Any failure of the language model, with a message fit to show a user."""


class LoadError(RagError):
    """A file that cannot be ingested; the message says why in plain words."""


class UploadError(RagError, ValueError):
    """An upload refused before it is saved (too large, unsupported type, no free name); the message names it."""


class DatasetError(RagError, ValueError):
    """A question set that cannot be read; the message names the file, the line and the reason."""


class ToolInputError(RagError, ValueError):
    """An agent tool's Action Input that does not fit the tool; the message tells the model how to write it."""


class CalculatorError(RagError, ValueError):
    """An expression the calculator refuses or cannot evaluate; the message says why."""
