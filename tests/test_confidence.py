"""How sure the model was of its answer: llama.cpp's token probabilities reach the answer step, an unsure answer
is flagged, and with ``unverified_answers="withhold"`` it is not given as the answer."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.answer.answerer import WITHHELD, Answerer
from rag.answer.notes import answer_note
from rag.answer.confidence import MIN_TOKEN_PROBABILITY, answer_confidence
from rag.index.embedder import Embedder
from rag.index.store import Store
from rag.llm import EmbeddedLLM, Generation, TokenProbs
from rag.llm.models import DEFAULT_EMBEDDED_MODEL
from rag.retrieval.retriever import Retriever
from rag.settings import Settings
from tests.conftest import SMALL_MODEL, XQUAD_DOCS, build_index


def test_the_weakest_token_before_the_first_citation_counts() -> None:
    probs = TokenProbs(((" Newton", 0.9), (" and", 0.2), (" Miller", 0.6), (" [", 0.05), ("1", 0.1), ("].", 0.9)))
    confidence = answer_confidence(probs)
    assert confidence is not None and confidence.lowest == 0.2 and confidence.token == " and"
    assert not confidence.sure and "hesitated over “and”" in confidence.reason
    sure = answer_confidence(TokenProbs((("1943", 0.95), (" [", 0.01), ("1", 0.3), ("].", 0.99))))
    assert sure is not None and sure.sure and sure.lowest == 0.95, "the citation's own tokens do not count"
    assert answer_confidence(None) is None and answer_confidence(TokenProbs(())) is None


def test_the_embedded_model_reports_the_probability_of_each_token_it_wrote() -> None:
    llm = EmbeddedLLM(model_name=SMALL_MODEL)
    generation = llm.stream([{"role": "user", "content": "What is the capital of France? One word."}],
                            max_tokens=12, temperature=0.0)
    text = generation.text()
    probs = generation.token_probs
    assert probs is not None and len(probs.tokens) >= 2, probs
    assert all(0.0 < p <= 1.0 for _, p in probs.tokens)
    # Every token written is scored but the last one (nothing is sampled after it to reveal it).
    joined = "".join(t for t, _ in probs.tokens)
    assert text.startswith(joined) and len(text) - len(joined) <= 12, (text, joined)


@pytest.fixture(scope="module")
def tesla_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("confidence")
    (root / "docs").mkdir()
    shutil.copy(XQUAD_DOCS / "Nikola_Tesla.md", root / "docs" / "Nikola_Tesla.md")
    assert not build_index(root / "docs", root / "index", embedder).failed
    store = Store(root / "index", embed_model=embedder.name, dim=embedder.dim)
    yield store
    store.close()


class UnsureLLM(EmbeddedLLM):
    """The real model, with the probabilities it reports lowered under the threshold. Why a stand-in: how sure a
    real model is of an answer cannot be chosen by a test; what is tested is what the answer step does with it."""

    def stream(self, *args, **kwargs) -> Generation:  # noqa: ANN002, ANN003
        real = super().stream(*args, **kwargs)
        outer = self

        class Lowered(Generation):
            def __init__(self) -> None:
                super().__init__(iter(()))

            def __next__(self) -> str:
                piece = next(real)
                self.usage = real.usage
                return piece

            def close(self) -> None:
                real.close()
                self.usage = real.usage
                if real.token_probs is not None:
                    self.token_probs = TokenProbs(tuple((t, p * outer.scale) for t, p in real.token_probs.tokens))

        return Lowered()

    scale = 1.0


def _answerer(store: Store, embedder: Embedder, llm: EmbeddedLLM, **settings: object) -> Answerer:
    s = Settings(llm="embedded", embedded_model=DEFAULT_EMBEDDED_MODEL, temperature=0.0, **settings)
    return Answerer(Retriever(store, embedder=embedder, settings=s), llm, s, calibrate=False)  # the rule alone


@pytest.mark.slow
def test_an_unsure_answer_is_flagged_or_withheld(tesla_index: Store, embedder: Embedder) -> None:
    """The default model (SmolLM2 refuses this question under the precision-first prompt)."""
    question = "When did Nikola Tesla die?"
    llm = UnsureLLM(model_name=DEFAULT_EMBEDDED_MODEL)
    answered = _answerer(tesla_index, embedder, llm).ask(question)
    assert not answered.refused and answered.verified and answered.confidence is not None, answered
    assert answered.confidence.sure and answered.to_json()["confidence"] >= MIN_TOKEN_PROBABILITY
    model_text = answered.answer
    llm.scale = MIN_TOKEN_PROBABILITY * 0.5 / answered.confidence.lowest  # now under the line

    shown = _answerer(tesla_index, embedder, llm).ask(question)
    assert shown.answer == model_text and not shown.verified and not shown.refused
    doc = shown.to_json()
    assert doc["verified"] is False and any("hesitated" in c for c in doc["checks"]), doc  # type: ignore[union-attr]
    assert doc["confidence"] < MIN_TOKEN_PROBABILITY and doc["candidate"] is None  # type: ignore[operator]
    note = answer_note(shown.result())
    assert note is not None and note.kind == "check" and "Check this answer" in note.markdown

    withheld = _answerer(tesla_index, embedder, llm, unverified_answers="withhold").ask(question)
    assert withheld.refused and withheld.refused_by == "check" and withheld.answer == WITHHELD
    assert withheld.candidate == model_text
    note = answer_note(withheld.result())
    assert note is not None and note.kind == "withheld", note
    assert note.markdown.startswith("**Not confirmed by your documents.**") and "hesitated" in note.markdown, note
    assert withheld.citations, "the passages are still listed to check"
