"""The trust failures a first-time user met (issue 24), each on made-up documents (``tests/data/trust``) the
default model has never seen: a follow-up that re-answered the previous question, a mayor the documents never
name invented, and an agent that stated a computed number as the value of another thing.

The fast tests check each cause without a chat model (the search query, the evidence gate, the claims check, the
agent loop with a scripted model); the slow ones ask the default model (Qwen2.5-Coder-1.5B) what the user asked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.agent.claims import misstated_numbers
from rag.agent.loop import Agent
from rag.agent.tools import calculator
from rag.answer.answerer import Answerer, Retrieved
from rag.answer.rewrite import as_asked, concat_query
from rag.answer.support import check_support
from rag.index.embedder import Embedder
from rag.index.store import Store
from rag.llm import EmbeddedLLM, get_llm
from rag.llm.models import DEFAULT_EMBEDDED_MODEL
from rag.retrieval.evidence import asked_role
from rag.retrieval.retriever import Retriever
from rag.settings import Settings
from tests.conftest import ROOT, build_index
from tests.fixtures_agent import ScriptedServer

TRUST_DOCS = ROOT / "tests" / "data" / "trust"
VISITORS = (TRUST_DOCS / "visitors.md").read_text()
VISITORS_QUESTION = "How many fewer visitors did the Tallow Hill Mining Museum have in 2020 than in 2019?"
FIRST_QUESTION = "Who designed the Brightwater Observatory?"
HISTORY = [{"role": "user", "content": FIRST_QUESTION}, {"role": "assistant", "content": "Helena Marsk [1]."}]


@pytest.fixture(scope="module")
def trust_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("trust")
    assert not build_index(TRUST_DOCS, root / "index", embedder).failed
    store = Store(root / "index", embed_model=embedder.name, dim=embedder.dim)
    yield store
    store.close()


def default_model_settings() -> Settings:
    return Settings(llm="embedded", embedded_model=DEFAULT_EMBEDDED_MODEL, temperature=0.0)


# ------------------------------------------------------------------ (a) a follow-up keeps its own question
def test_a_follow_up_is_searched_with_the_earlier_subject_not_the_earlier_question() -> None:
    # Joined whole, "Who designed ..." outweighed "when was it built": only the designer's passage was found.
    assert concat_query("and when was it built?", HISTORY) == "Brightwater Observatory and when was it built?"
    # A follow-up that does not say what it asks still needs the earlier question whole, its verb included.
    assert concat_query("and where?", [{"role": "user", "content": "When did Tesla die?"}]) == \
        "When did Tesla die? and where?"
    assert as_asked("and when was it built?") == "When was it built?"


def test_a_follow_up_finds_the_passage_that_answers_it(trust_index: Store, embedder: Embedder) -> None:
    answerer = Answerer(Retriever(trust_index, embedder=embedder), EmbeddedLLM(model_name=DEFAULT_EMBEDDED_MODEL),
                        Settings(rewrite="concat"))
    retrieved = next(answerer.run("and when was it built?", HISTORY))
    assert isinstance(retrieved, Retrieved) and not retrieved.refused
    shown = retrieved.hits[: len([h for h in retrieved.hits if h.score >= 0.5 * retrieved.hits[0].score])]
    assert any("completed in 1906" in h.chunk.text for h in shown), [h.chunk.text[:60] for h in shown]


def test_the_designer_is_no_answer_to_and_when_was_it_built() -> None:
    # The check that should have warned: "and when" asks when as much as "when" does.
    support = check_support("and when was it built?", "It was designed by Helena Marsk [1].",
                            ["It was designed by the architect Helena Marsk."], lambda terms: [1.0] * len(terms))
    assert not support.answers and "the question asks when, and the answer gives no date" in support.reasons


@pytest.mark.slow
def test_the_default_model_answers_the_follow_up_not_the_earlier_question(trust_index: Store,
                                                                          embedder: Embedder) -> None:
    settings = default_model_settings()
    answerer = Answerer(Retriever(trust_index, embedder=embedder, settings=settings),
                        EmbeddedLLM.from_settings(settings), settings)
    answer = answerer.ask("and when was it built?", HISTORY)
    assert not answer.refused and "Marsk" not in answer.answer, answer.answer
    assert re.search(r"\b(1902|1906)\b", answer.answer), answer.answer


# ------------------------------------------------------------------ (b) a role no passage mentions is not invented
def test_the_role_a_who_question_asks_for() -> None:
    assert asked_role("Who was the mayor of Lindqvist?") == "mayor"
    assert asked_role("Who is Lindqvist's mayor?") == "mayor"
    assert asked_role("Who was the first person to look after the light?") is None  # no role named
    assert asked_role("When was the church built?") is None


def test_a_question_for_a_role_no_passage_mentions_is_refused_before_the_model(trust_index: Store,
                                                                                 embedder: Embedder) -> None:
    retriever = Retriever(trust_index, embedder=embedder)
    mayor = retriever.retrieve("Who was the mayor of Lindqvist?")
    # The town is there (the score alone let it through and the model named the mayor of its prompt's example) ...
    assert mayor.hits[0].chunk.source == "lindqvist.md"
    # ... the mayor is not.
    assert not mayor.evidence.found and mayor.evidence.unmentioned == "mayor"
    for answerable in ("Who was the architect of the Brightwater Observatory?",
                       "Who painted the ceiling of the church of St. Bride?"):
        assert retriever.retrieve(answerable).evidence.found, answerable


@pytest.mark.slow
def test_the_default_model_is_not_asked_who_the_mayor_was(trust_index: Store, embedder: Embedder) -> None:
    settings = default_model_settings()
    answerer = Answerer(Retriever(trust_index, embedder=embedder, settings=settings),
                        EmbeddedLLM.from_settings(settings), settings)
    answer = answerer.ask("Who was the mayor of Lindqvist?")
    assert answer.refused and answer.refused_by == "retrieval", answer.answer
    assert "Clara" not in answer.answer


# ------------------------------------------------------------------ (c) a computed number stated as what it is
@pytest.mark.parametrize("answer, wrong", [
    ("The Tallow Hill Mining Museum had 8150 visitors in 2019, which was 8150 fewer than in 2020 [2].", True),
    ("The museum had 8,150 visitors in 2019 and 6,100 in 2020 [1].", True),
    ("It had 6,100 visitors in 2020 and 8,150 in 2019 [1].", True),  # "visitors" said once, for both
    ("The museum had 8,150 fewer visitors in 2020 than in 2019 [1].", False),
    ("It had 14,250 visitors in 2019 and 6,100 in 2020, so 8,150 fewer [1].", False),
    ("The difference is 8,150 visitors [1].", False),
])
def test_a_computed_number_stated_as_another_things_value_is_caught(answer: str, wrong: bool) -> None:
    found = misstated_numbers(answer, [VISITORS], ["8150"], VISITORS_QUESTION)
    assert bool(found) == wrong, found
    if wrong:
        assert found[0].passage_value == "14,250" and "2019" in found[0].thing


def _visitors_agent(server: ScriptedServer, retriever: Retriever) -> Agent:
    settings = server.settings()
    return Agent(retriever, get_llm(settings), settings)


SEARCH = "Thought: I need both years.\nAction: search_documents\nAction Input: Tallow Hill museum visitors 2019 2020"
SUBTRACT = "Thought: 14,250 in 2019 and 6,100 in 2020 [1]. I subtract.\nAction: calculator\nAction Input: 14250 - 6100"
MISSTATED = "Thought: I know the answer.\nFinal Answer: The museum had 8,150 visitors in 2019 and 6,100 in 2020 [1]."
RIGHT = "Thought: I know the answer.\nFinal Answer: The museum had 8,150 fewer visitors in 2020 than in 2019 [1]."


def test_the_agent_gets_one_chance_to_state_a_computed_number_right(scripted_server: ScriptedServer,
                                                                     trust_index: Store, embedder: Embedder) -> None:
    retriever = Retriever(trust_index, embedder=embedder)
    result = _visitors_agent(scripted_server.play(SEARCH, SUBTRACT, MISSTATED, RIGHT), retriever).ask(
        VISITORS_QUESTION)
    assert result.answered and result.answer.startswith("The museum had 8,150 fewer"), result.answer
    assert "attaches a computed number to the wrong thing" in result.steps[-1].observation
    assert "14,250" in result.steps[-1].observation
    assert result.verified and result.checks == []

    # Stated wrong again after the note: accepted as the final answer, but not verified, and it says why.
    result = _visitors_agent(scripted_server.play(SEARCH, SUBTRACT, MISSTATED, MISSTATED), retriever).ask(
        VISITORS_QUESTION)
    assert result.answered and not result.verified
    assert result.result().checks and "the passages give 14,250" in result.result().checks[0]


@pytest.mark.slow
def test_the_default_model_agent_does_not_state_the_difference_as_2019s_visitors(trust_index: Store,
                                                                                 embedder: Embedder) -> None:
    settings = default_model_settings()
    agent = Agent(Retriever(trust_index, embedder=embedder, settings=settings), EmbeddedLLM.from_settings(settings),
                  settings)
    result = agent.ask(VISITORS_QUESTION)
    wrong = re.search(r"8,?150 visitors in 2019|2019[^.]{0,30}\b8,?150 visitors", result.answer)
    assert not (wrong and result.verified), (result.answer, [s.observation for s in result.steps])
    if result.verified:
        assert re.search(r"8,?150", result.answer), result.answer


def test_the_calculator_reads_numbers_as_passages_write_them() -> None:
    # On unseen documents the agent wrote "231,900 - 182,400" and got a tuple error, then stated a difference it
    # never computed. Thousands separators are read as such, except where a comma separates a call's arguments.
    assert calculator("231,900 - 182,400").text == "49500"
    assert calculator("round(2.567,2)").text == "2.57"
    assert not calculator("1,5").ok
