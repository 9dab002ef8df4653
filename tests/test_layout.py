"""The tree shows the flow: ``ingest`` sits on top of ``rag`` (never the other way), ``rag`` is grouped into
sub-packages, files stay small, the app only renders, and the page and the commands reach documents and the index
only through the application service (``rag.service``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Entry points sit on top of both layers: ``python -m rag.eval`` ingests a question set's documents first.
ENTRY_POINTS = {ROOT / "rag" / "eval.py"}
# The application service sits on top of both layers too: it is what the page and the commands call.
SERVICE = ROOT / "rag" / "service"
# The commands that read or change the library, and the page: they hold no store, pipeline or retriever themselves.
COMMANDS = [ROOT / "ingest" / "__main__.py", ROOT / "ingest" / "bootstrap.py", ROOT / "rag" / "search.py",
            ROOT / "rag" / "ask.py", ROOT / "rag" / "agent" / "__main__.py"]
SANDBOX_CHILD = ROOT / "rag" / "sandbox" / "child.py"  # must stay one stdlib-only script


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize(
    "path", [p for p in python_files("rag") if p not in ENTRY_POINTS and SERVICE not in p.parents], ids=relative
)
def test_rag_never_imports_ingest(path: Path) -> None:
    assert not {m for m in imported_modules(path) if m == "ingest" or m.startswith("ingest.")}, (
        f"{path.relative_to(ROOT)} imports ingest: the core must not depend on the layer that feeds it"
    )


def test_rag_is_grouped_into_sub_packages() -> None:
    flat = [p.name for p in (ROOT / "rag").glob("*.py")]
    assert len(flat) <= 10, flat
    for package in ("index", "retrieval", "answer", "llm", "agent", "sandbox"):
        assert (ROOT / "rag" / package / "__init__.py").is_file(), package


@pytest.mark.parametrize(
    "path", [p for p in [*python_files("rag"), *python_files("ingest"), *python_files("ui"), ROOT / "app.py"]
             if p != SANDBOX_CHILD],
    ids=relative,
)
def test_no_module_over_400_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 400, f"{path.relative_to(ROOT)} has {lines} lines; split it along its seams"


def test_the_sandbox_child_imports_only_the_standard_library() -> None:
    import sys

    outside = {m.split(".")[0] for m in imported_modules(SANDBOX_CHILD)} - set(sys.stdlib_module_names)
    assert not outside, outside


@pytest.mark.parametrize("path", [ROOT / "app.py", *python_files("ui")], ids=relative)
def test_the_page_imports_no_storage_or_parsing_library(path: Path) -> None:
    forbidden = ("rag.index", "ingest.loaders", "ingest.split", "pypdf", "faiss", "sqlite3", "bm25s", "numpy")
    imports = imported_modules(path)
    assert not {m for m in imports if m.startswith(forbidden)}, imports


@pytest.mark.parametrize("path", [p for p in [*python_files("rag"), *python_files("ingest")]], ids=relative)
def test_only_the_page_imports_streamlit(path: Path) -> None:
    assert not {m for m in imported_modules(path) if m.split(".")[0] == "streamlit"}, "rendering belongs in ui/"


def test_the_service_is_a_package_of_rag() -> None:
    assert (SERVICE / "__init__.py").is_file()
    assert not (ROOT / "ingest" / "library.py").exists(), "the library lives in rag.service, with no copy left behind"


@pytest.mark.parametrize("path", [ROOT / "app.py", *python_files("ui"), *COMMANDS], ids=relative)
def test_the_page_and_the_commands_reach_the_index_only_through_the_service(path: Path) -> None:
    forbidden = {"rag.index.store", "ingest.pipeline", "rag.retrieval.retriever", "rag.agent.loop",
                 "rag.service.library", "rag.service.app"}
    imports = imported_modules(path)
    assert not imports & forbidden, f"{relative(path)} imports {imports & forbidden}: call rag.service.Service"
    if path in COMMANDS:
        assert "rag.service" in imports, f"{relative(path)} should reach documents and the index through rag.service"


@pytest.mark.parametrize("path", [ROOT / "app.py", *python_files("ui"), *COMMANDS], ids=relative)
def test_the_page_and_the_commands_never_reach_behind_the_service(path: Path) -> None:
    """``service.store`` or ``service.library`` would be the store or the library by another road."""
    reached = {node.attr for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, ast.Attribute) and node.attr in ("store", "library")}
    assert not reached, f"{relative(path)} uses .{', .'.join(sorted(reached))}: ask the service instead"


@pytest.mark.parametrize("path", [ROOT / "app.py", *python_files("ui")], ids=relative)
def test_the_page_imports_nothing_from_ingest(path: Path) -> None:
    assert not {m for m in imported_modules(path) if m.split(".")[0] == "ingest"}, "uploads go through rag.service"


@pytest.mark.parametrize("path", [p for p in python_files("ingest") if p not in COMMANDS], ids=relative)
def test_only_the_ingest_commands_import_the_service(path: Path) -> None:
    """The service is built on the pipeline: a pipeline module importing it back would be a cycle."""
    assert not {m for m in imported_modules(path) if m.startswith("rag.service")}, relative(path)


API = ROOT / "rag" / "api"
# What the HTTP API may use of the project: the application service, the answer contract, the settings, and the
# model backends (to list and check the chat model). Never the store, the retriever or the ingest pipeline.
API_ALLOWED = ("rag.api", "rag.service", "rag.answer.result", "rag.settings", "rag.llm", "rag.errors")


@pytest.mark.parametrize("path", python_files("rag/api"), ids=relative)
def test_the_api_reaches_the_index_only_through_the_service(path: Path) -> None:
    ours = {m for m in imported_modules(path) if m.split(".")[0] in ("rag", "ingest", "ui", "app")}
    assert not {m for m in ours if not any(m == a or m.startswith(a + ".") for a in API_ALLOWED)}, ours
