"""One error family: every exception class the project defines descends from ``rag.errors.RagError``, and a network
failure (the embeddings server) is not a storage error."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from rag.errors import EmbeddingError, RagError, StoreError
from tests.test_layout import ROOT, python_files

PROJECT_FILES = [*python_files("rag"), *python_files("ingest"), *python_files("ui"), ROOT / "app.py"]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def class_names(path: Path) -> list[str]:
    """The classes a file defines at its top level that derive from something (exceptions among them)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef) and node.bases]


def exception_classes() -> list[tuple[str, type[BaseException]]]:
    found = []
    for path in PROJECT_FILES:
        names = class_names(path)
        if not names or path.name == "__main__.py" or path == ROOT / "app.py":
            continue
        module = importlib.import_module(module_name(path))
        found += [(f"{module.__name__}.{name}", getattr(module, name)) for name in names
                  if isinstance(getattr(module, name), type) and issubclass(getattr(module, name), BaseException)]
    return found


EXCEPTIONS = exception_classes()


def test_the_scan_finds_the_families_and_their_kinds() -> None:
    names = {name.rsplit(".", 1)[1] for name, _ in EXCEPTIONS}
    assert {"EmbeddingServerError", "NoIndexError", "LLMUnavailable", "LLMStreamBroken", "ModelFileError",
            "StoreError", "LoadError"} <= names, names


@pytest.mark.parametrize(("name", "cls"), [
    pytest.param(name, cls, id=name) for name, cls in EXCEPTIONS
])
def test_every_exception_of_the_project_is_a_rag_error(name: str, cls: type[BaseException]) -> None:
    assert issubclass(cls, RagError), f"{name} does not derive from rag.errors.RagError"


def test_a_network_failure_is_not_a_storage_error() -> None:
    from rag.index.embed_server import EmbeddingServerError

    assert issubclass(EmbeddingServerError, EmbeddingError)
    assert not issubclass(EmbeddingServerError, StoreError)


def test_the_old_import_locations_still_work_and_built_in_bases_are_kept() -> None:
    from ingest.loaders.base import LoadError
    from rag.agent.calculator import CalculatorError
    from rag.agent.tool import ToolInputError
    from rag.errors import DatasetError as Dataset
    from rag.errors import UploadError
    from rag.index.records import StoreError as Store
    from rag.index.store import StoreError as StoreAgain
    from rag.llm.base import LLMError
    from rag.retrieval.evaluate import DatasetError

    assert Store is StoreAgain is StoreError and DatasetError is Dataset
    assert issubclass(LLMError, RuntimeError) and issubclass(LoadError, RagError)
    for cls in (UploadError, DatasetError, ToolInputError, CalculatorError):
        assert issubclass(cls, ValueError) and issubclass(cls, RagError), cls


def test_the_calculator_error_reaches_its_caller_as_a_rag_error() -> None:
    from rag.agent.calculator import calculate

    with pytest.raises(RagError, match="division by zero"):
        calculate("1 / 0")

