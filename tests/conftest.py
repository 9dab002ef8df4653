"""Shared pytest fixtures. Fixture modules for the bigger pieces live beside this file."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Models come from PyPI packages; never reach for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tests that only need *a* model run the 135M one: ten times faster than the default 1.5B. The tests of the default
# model (tests/test_default_model.py) ask for it by name.
os.environ.setdefault("RAG_EMBEDDED_MODEL", "smollm2-135m")
SMALL_MODEL = "smollm2-135m"

pytest_plugins: list[str] = ["tests.fixtures_llm", "tests.fixtures_agent", "tests.fixtures_browser",
                             "tests.fixtures_milvus"]

ROOT = Path(__file__).resolve().parent.parent
XQUAD_DOCS = ROOT / "tests" / "data" / "xquad"  # five articles of the public set, vendored (CC BY-SA 4.0)


@pytest.fixture(scope="session")
def embedder():
    """The real all-MiniLM-L6-v2 through the configured backend (ONNX int8 by default), loaded once for the run."""
    from rag.index.embedder import get_embedder

    embedder = get_embedder()
    embedder.load()
    return embedder


def build_index(docs: Path, index_dir: Path, embedder):  # noqa: ANN201 - an IngestReport
    """Ingest the files in ``docs`` into a new index at ``index_dir`` with the shared embedder, and close it."""
    from ingest.pipeline import Ingestor
    from rag.index.store import Store

    store = Store(index_dir, embed_model=embedder.name, dim=embedder.dim)
    try:
        return Ingestor(store, embedder=embedder).ingest([docs])
    finally:
        store.close()


@pytest.fixture(params=["embedded", pytest.param("milvus", marks=pytest.mark.milvus)])
def store_factory(request: pytest.FixtureRequest) -> Iterator:
    """Opens indexes of one backend: ``store_factory(folder, embed_model=..., dim=...)``. A test that asks for it
    (or for ``store``) runs once per backend: the embedded store, then Milvus (marked ``milvus``: its tests start
    a server, ``tests/fixtures_milvus.py``; ``-m "not milvus"`` skips them)."""
    from tests.stores import StoreFactory, backend_for

    factory = StoreFactory(backend_for(request.param, request))
    yield factory
    factory.close_all()


@pytest.fixture
def store(tmp_path: Path, embedder, store_factory) -> Iterator:
    """An empty index of the backend under test, for the shared embedding model."""
    yield store_factory(tmp_path / "index", embed_model=embedder.name, dim=embedder.dim)


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run ``python -m MODULE ARGS`` in a child process from the project root, as a user would."""
    import subprocess

    def run(module: str, *args: str, timeout: float = 600, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )

    return run
