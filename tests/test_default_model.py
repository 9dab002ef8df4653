"""The default embedded model end to end: Qwen2.5-Coder-1.5B-Instruct answers from a real index through the CLI,
cites the right article and passes the groundedness check; in agent mode it finishes a lookup-and-arithmetic
question with the calculator. Slow (a 1.5B model on two cores): the other tests use the 135M model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rag.agent.loop import Agent
from rag.index.embedder import Embedder
from rag.index.store import Store
from rag.llm import EmbeddedLLM
from rag.llm.models import DEFAULT_EMBEDDED_MODEL
from rag.retrieval.retriever import Retriever
from rag.settings import Settings
from tests.conftest import XQUAD_DOCS, build_index

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    root = tmp_path_factory.mktemp("default-model")
    (root / "docs").mkdir()
    for name in ("Nikola_Tesla.md", "Oxygen.md", "Super_Bowl_50.md"):
        shutil.copy(XQUAD_DOCS / name, root / "docs" / name)
    assert not build_index(root / "docs", root / "index", embedder).failed
    return root / "index"


def test_the_default_model_answers_briefly_cites_and_is_verified(index_dir: Path, run_cli,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAG_EMBEDDED_MODEL")  # what a user gets without setting anything
    done = run_cli("rag.ask", "When did Nikola Tesla die?", "--index", str(index_dir), "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["model"] == "qwen2.5-coder-1.5b-instruct-q4_k_m" and answer["backend"] == "embedded"
    assert "1943" in answer["answer"] and len(answer["answer"]) < 200, answer["answer"]
    assert answer["refused"] is False and answer["verified"] is True and answer["unverified"] == []
    cited = [c for c in answer["citations"] if c["cited"]]
    assert cited and {c["source"] for c in cited} == {"Nikola_Tesla.md"}, "it wrote [n] markers"

    outside = json.loads(run_cli("rag.ask", "Which composer wrote the opera Tosca?", "--index", str(index_dir),
                                 "--json").stdout)
    assert outside["refused"] is True


def test_the_default_model_finishes_a_lookup_and_arithmetic_question(index_dir: Path, embedder: Embedder) -> None:
    settings = Settings(llm="embedded", embedded_model=DEFAULT_EMBEDDED_MODEL, temperature=0.0)
    store = Store(index_dir, embed_model=embedder.name, dim=embedder.dim)
    try:
        agent = Agent(Retriever(store, embedder=embedder, settings=settings), EmbeddedLLM.from_settings(settings),
                      settings)
        result = agent.ask("How many years after Tesla's death was the SI unit of magnetic flux density named "
                           "after him?")
    finally:
        store.close()
    assert result.stopped_reason == "final_answer", [s.to_json() for s in result.steps]
    assert any(s.action in ("calculator", "python") and s.ok for s in result.steps), "it computed with a tool"
    assert "17" in result.answer, result.answer
    assert result.citations[0].source == "Nikola_Tesla.md"
