"""Agent mode: the tools on their own, the ReAct loop, the CLI, and real runs on the embedded model and on vLLM.

Most loop tests replay scripted model turns through a small local OpenAI-compatible server
(``tests/fixtures_agent.py``): the bundled SmolLM2-135M cannot follow the ReAct format reliably (it answers in one
line without an Action), so it cannot drive the loop down the paths under test. Everything else is real: the
``openai`` backend over HTTP with streaming and ``stop``, a real index built with the real MiniLM embedder, the
real calculator and sandbox. The embedded and vLLM runs show what the real models do and that the loop ends
cleanly whatever they write.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rag.agent.events import AgentFinished, AgentStep, AgentText
from rag.agent.loop import STOP, Agent, system_prompt
from rag.agent.reply import clean_reply, parse_reply
from rag.agent.tools import PassageRegistry, calculator, default_tools, run_python
from rag.index.embedder import Embedder
from rag.index.store import Store
from rag.llm import EmbeddedLLM, get_llm
from rag.retrieval.retriever import Retriever
from rag.settings import Settings
from tests.conftest import SMALL_MODEL, XQUAD_DOCS, build_index
from tests.fixtures_agent import ScriptedServer
from tests.pdfs import make_pdf

DOCS = ["Nikola_Tesla.md", "Super_Bowl_50.md", "Oxygen.md"]
PDF_PAGES = [
    "Harbour Lighthouse. The Harbour Lighthouse at Port Elling was first lit in 1871. Its lamp burned whale oil.",
    "The Harbour Lighthouse was automated in 1989, when its last keeper left. The tower is 31 metres tall.",
]
TESLA_QUERY = "Tesla death SI unit named"
RESULT_KEYS = {"answer", "steps", "citations", "stopped_reason"}
STEP_KEYS = {"thought", "action", "input", "observation"}


@pytest.fixture(scope="module")
def agent_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """Three real articles and a two-page PDF, ingested once for this module; returns the index folder."""
    root = tmp_path_factory.mktemp("agent")
    docs = root / "docs"
    docs.mkdir()
    for name in DOCS:
        shutil.copy(XQUAD_DOCS / name, docs / name)
    make_pdf(docs / "lighthouse.pdf", PDF_PAGES)
    report = build_index(docs, root / "index", embedder)
    assert len(report.added) == len(DOCS) + 1 and not report.failed
    return root / "index"


@pytest.fixture
def retriever(agent_index: Path, embedder: Embedder) -> Retriever:
    store = Store(agent_index, embed_model=embedder.name, dim=embedder.dim)
    yield Retriever(store, embedder=embedder)
    store.close()


def scripted_agent(server: ScriptedServer, retriever: Retriever, **settings: object) -> Agent:
    s = server.settings(**settings)
    return Agent(retriever, get_llm(s), s)


# ------------------------------------------------------------------------------------------------ tools alone
def test_search_documents_numbers_passages_stably_with_source_and_page(retriever: Retriever) -> None:
    registry = PassageRegistry()
    # No relevance cut here: the test needs three passages per search to check their numbering.
    search = default_tools(retriever, Settings(agent_search_k=3, min_relative_score=0.0), registry)[0]
    assert search.name == "search_documents"

    first = search(TESLA_QUERY)
    assert first.ok and [p.n for p in first.passages] == [1, 2, 3]
    assert first.text.startswith("[1] (Nikola_Tesla.md)\n<<<\n")
    assert "Tesla died on 7 January 1943" in first.passages[0].text
    assert first.text.count("<<<") == 3

    pdf = search('{"query": "Harbour Lighthouse automated keeper"}')  # JSON object input, per the schema
    top = pdf.passages[0]
    assert top.n == 4 and top.hit.chunk.source == "lighthouse.pdf" and top.hit.chunk.page == 2
    assert "[4] (lighthouse.pdf, page 2)" in pdf.text

    again = search(TESLA_QUERY)
    assert [p.n for p in again.passages] == [1, 2, 3], "a passage keeps its number for the whole run"
    assert [p.hit.chunk.id for p in again.passages] == [p.hit.chunk.id for p in first.passages]
    assert registry.get(4) is top and [p.n for p in registry.passages] == list(range(1, len(registry) + 1))
    assert "1943" in first.short and "[1] (Nikola_Tesla.md)" in first.short  # the compact form keeps the fact

    wrong_key = search('{"q": "Tesla"}')
    assert not wrong_key.ok and "'query'" in wrong_key.text and wrong_key.text.startswith("Error:")
    assert not search("   ").ok


def test_calculator_tool_gives_results_and_errors_as_observations() -> None:
    assert calculator("(1960 - 1943) * 12").text == "204"
    zero = calculator("1 / 0")
    assert not zero.ok and zero.text == "Error: division by zero"
    sneaky = calculator("__import__('os').system('true')")
    assert not sneaky.ok and sneaky.text.startswith("Error: ")
    tool = default_tools(retriever=None, settings=Settings())[1]  # type: ignore[arg-type]
    assert tool.name == "calculator" and tool('{"expression": "2 ** 10"}').text == "1024"
    assert tool.schema == {"type": "object", "properties": {"expression": {"type": "string",
                           "description": "an arithmetic expression with numbers only"}}, "required": ["expression"],
                           "additionalProperties": False}


def test_python_tool_runs_programs_in_the_sandbox() -> None:
    benign = run_python("def solution():\n    return 1960 - 1943\n")
    assert benign.ok and benign.text == "17"
    blocked = run_python("import os\nprint(os.listdir('/'))")
    assert not blocked.ok and "import of 'os' is not allowed" in blocked.text
    silent = run_python("x = 1")
    assert not silent.ok and "printed nothing" in silent.text
    tool = default_tools(retriever=None, settings=Settings(agent_python_timeout=2))[2]  # type: ignore[arg-type]
    fenced = tool("```python\nfrom fractions import Fraction\nprint(Fraction(1, 3) + Fraction(1, 6))\n```")
    assert tool.name == "python" and fenced.ok and fenced.text == "1/2"
    slow = tool("while True:\n    pass")
    assert not slow.ok and "time limit" in slow.text


# ---------------------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Thought: add\nAction: calculator\nAction Input: 2 + 2", ("calculator", "2 + 2", None)),
        ("**Thought:** run\n**Action:** python\n**Action Input:**\nprint(1)\nprint(2)",
         ("python", "print(1)\nprint(2)", None)),
        ("Thought: ok\nFinal Answer: 17 years [1].\nQuestion: and then?", (None, None, "17 years [1].")),
        ("Action: calculator\nAction Input: 2+2\nObservation: 5\nFinal Answer: 5", ("calculator", "2+2", None)),
    ],
)
def test_parse_reply_accepts_the_format(reply: str, expected: tuple) -> None:
    parsed = parse_reply(clean_reply(reply))
    assert parsed.error is None and (parsed.action, parsed.input, parsed.final) == expected


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("The answer is 17.", "no 'Action:' line and no 'Final Answer:' line"),
        ("", "your reply was empty"),
        ("Thought: x\nAction: calculator(1960 - 1943)", "must be only the tool name"),
        ("Thought: x\nAction: calculator", "must be followed by a line 'Action Input: ...'"),
        ("Action: calculator\nAction Input: 1\nFinal Answer: 1", "an Action and a Final Answer"),
        ("Action: calculator\nAction Input: 1\nAction: python\nAction Input: print(1)", "one Action per reply"),
        ("Thought: done\nFinal Answer:", "the Final Answer is empty"),
        ("<think>I should search", "your reply was empty"),
    ],
)
def test_parse_reply_rejects_malformed_turns_with_a_reason(reply: str, message: str) -> None:
    parsed = parse_reply(clean_reply(reply))
    assert parsed.final is None and parsed.error is not None and message in parsed.error


def test_system_prompt_lists_the_tools_and_the_few_shot_examples() -> None:
    prompt = system_prompt(default_tools(retriever=None, settings=Settings()))  # type: ignore[arg-type]
    for name in ("search_documents(query", "calculator(expression", "python(code"):
        assert name in prompt
    assert "Action Input: 24.5 - 17.2" in prompt and "def solution():" in prompt  # ReAct and PAL examples
    assert "{tools}" not in prompt and "{examples}" not in prompt


# ------------------------------------------------------------------------------------------- the loop, scripted
def test_search_then_python_then_final_answer_cites_the_searched_passage(
    scripted_server: ScriptedServer, retriever: Retriever
) -> None:
    scripted_server.play(
        "Thought: I need the year Tesla died and the year the unit was named.\n"
        "Action: search_documents\nAction Input: " + TESLA_QUERY,
        "Thought: He died in 1943 and the unit was named in 1960 [1].\nAction: python\nAction Input:\n"
        "```python\ndef solution():\n    return 1960 - 1943\n```",
        "Thought: I know the answer.\n"
        "Final Answer: The SI unit was named after Tesla 17 years after his death in 1943 [1] [9].",
    )
    agent = scripted_agent(scripted_server, retriever, min_relative_score=0.0)  # three passages, numbered 1-3
    events = agent.run("How many years after Tesla's death was the SI unit named after him?")
    written = []
    for first in events:  # the reply streams in pieces, then its step arrives before the next request
        if not isinstance(first, AgentText):
            break
        assert first.step == 1
        written.append(first.text)
    assert isinstance(first, AgentStep) and len(scripted_server.requests) == 1, "a step is yielded at once"
    assert len(written) > 1 and "".join(written).strip() == first.raw, "the thought was shown as it was written"
    rest = list(events)
    assert isinstance(rest[-1], AgentFinished)
    result = rest[-1].result
    search, program = result.steps
    assert (search.action, search.input, search.passages) == ("search_documents", TESLA_QUERY, (1, 2, 3))
    assert search.observation.startswith("[1] (Nikola_Tesla.md)") and "7 January 1943" in search.observation
    assert (program.action, program.observation) == ("python", "17") and search.ok and program.ok
    assert result.stopped_reason == "final_answer" and result.thought == "I know the answer."
    assert result.answer == "The SI unit was named after Tesla 17 years after his death in 1943 [1].", \
        "the marker [9] pointed at no passage and is dropped"
    (cited,) = result.citations
    assert cited.n == 1 and cited.cited and cited.source == "Nikola_Tesla.md" and cited.page is None
    assert "1960" in cited.text and cited.support in cited.text and "named the SI unit" in cited.support

    # What the model was shown: observations as user turns, generation stopped before invented observations.
    assert all(r["stop"] == STOP for r in scripted_server.requests)
    second = scripted_server.last_messages(1)
    assert second[-2]["role"] == "assistant" and second[-2]["content"].startswith("Thought: I need the year")
    assert second[-1] == {"role": "user", "content": "Observation: " + search.observation}
    assert scripted_server.last_messages(2)[-1]["content"] == "Observation: 17"

    document = json.loads(json.dumps(result.to_json()))
    assert RESULT_KEYS <= document.keys() and all(step.keys() == STEP_KEYS for step in document["steps"])
    assert document["citations"][0]["n"] == 1 and document["citations"][0]["cited"] is True
    assert document["backend"] == "openai" and document["model"] == "scripted-react"


@pytest.mark.parametrize(
    ("bad_turn", "told"),
    [
        ("Thought: I will compute it.\nAction: calculator(1960 - 1943)", "must be only the tool name"),
        ("The answer is 17.", "no 'Action:' line and no 'Final Answer:' line"),
        ("Thought: compute\nAction: calculator\nAction Input: 1960 - 1943\nFinal Answer: 17",
         "an Action and a Final Answer"),
    ],
)
def test_malformed_action_is_explained_and_the_model_corrects_it(
    scripted_server: ScriptedServer, retriever: Retriever, bad_turn: str, told: str
) -> None:
    scripted_server.play(
        bad_turn,
        "Thought: I will use the tool properly.\nAction: calculator\nAction Input: 1960 - 1943",
        "Final Answer: 17 years.",
    )
    result = scripted_agent(scripted_server, retriever).ask("How many years from 1943 to 1960?")
    rejected, fixed = result.steps
    assert not rejected.valid and told in rejected.observation
    assert scripted_server.last_messages(1)[-1]["content"] == "Observation: " + rejected.observation
    assert scripted_server.last_messages(1)[-2]["content"] == clean_reply(bad_turn)
    assert fixed.valid and (fixed.action, fixed.input, fixed.observation) == ("calculator", "1960 - 1943", "17")
    assert result.stopped_reason == "final_answer" and result.answer == "17 years."
    assert result.citations == [], "no search, nothing to cite"


def test_unknown_tool_is_an_observation_and_the_run_goes_on(
    scripted_server: ScriptedServer, retriever: Retriever
) -> None:
    scripted_server.play(
        "Thought: Let me look it up online.\nAction: web_search\nAction Input: Tesla death",
        "Thought: Then I search the documents.\nAction: Search_Documents\nAction Input: Tesla died 1943",
        "Thought: Found it.\nFinal Answer: Tesla died on 7 January 1943.",
    )
    result = scripted_agent(scripted_server, retriever).ask("When did Tesla die?")
    unknown, search = result.steps
    assert not unknown.valid and not unknown.ok and unknown.action == "web_search"
    assert unknown.observation == "Error: unknown tool 'web_search'. Use one of: search_documents, calculator, python."
    assert search.valid and search.passages and "[1] (Nikola_Tesla.md)" in search.observation
    assert result.stopped_reason == "final_answer"
    assert result.citations and not any(c.cited for c in result.citations), "uncited: passages listed as consulted"
    assert [c.n for c in result.citations] == list(search.passages)


def test_step_limit_stops_the_run(scripted_server: ScriptedServer, retriever: Retriever) -> None:
    turn = "Thought: Let me check again.\nAction: calculator\nAction Input: 1 + 1"
    scripted_server.play(turn, turn, turn, "Final Answer: 2")
    result = scripted_agent(scripted_server, retriever, agent_max_steps=2, agent_fallback=False).ask("What is 1 + 1?")
    assert result.stopped_reason == "max_steps" and len(result.steps) == 2
    assert len(scripted_server.requests) == 2, "no model turn beyond the limit"
    assert "already ran this in step 1" in result.steps[1].observation
    assert "within 2 steps" in result.answer and result.citations == [] and not result.fallback


def test_a_model_that_ignores_the_format_gets_the_plain_grounded_answer(
    scripted_server: ScriptedServer, retriever: Retriever
) -> None:
    """What the bundled 135M model does: free text every turn. After two malformed replies in a row the loop
    stops and the plain answer step answers, with its own citations (its prompt asks for [n] markers)."""
    scripted_server.play(
        "Tesla died in 1943.",
        "He died in New York.",
        "Tesla died on 7 January 1943 [1].",  # the plain answer step's turn
    )
    result = scripted_agent(scripted_server, retriever, agent_max_steps=6).ask("When did Nikola Tesla die?")
    assert result.stopped_reason == "format_errors" and len(result.steps) == 2
    assert not any(step.valid for step in result.steps)
    assert result.fallback and not result.refused and result.answer == "Tesla died on 7 January 1943 [1]."
    assert result.citations[0].cited and result.citations[0].source == "Nikola_Tesla.md"
    assert len(scripted_server.requests) == 3
    assert "Observation" not in scripted_server.last_messages()[0]["content"], "a plain answer prompt, not ReAct"
    document = result.to_json()
    assert document["fallback"] is True and document["stopped_reason"] == "format_errors"

    scripted_server.play("no format", "still no format")
    refused = scripted_agent(scripted_server, retriever).ask("Which composer wrote the opera Tosca?")
    assert refused.fallback and refused.refused and len(scripted_server.requests) == 2, "no evidence: no model call"


def test_calculator_step_and_an_invented_observation_is_cut_off(
    scripted_server: ScriptedServer, retriever: Retriever
) -> None:
    scripted_server.play(
        "Thought: Months between the two years.\nAction: calculator\nAction Input: (1960 - 1943) * 12\n"
        "Observation: 300\nThought: so 300 months.\nFinal Answer: 300 months.",
        "Thought: I know the answer.\nFinal Answer: 204 months.",
    )
    result = scripted_agent(scripted_server, retriever).ask("How many months from 1943 to 1960?")
    (step,) = result.steps
    assert (step.action, step.input, step.observation) == ("calculator", "(1960 - 1943) * 12", "204")
    assert "300" not in step.raw, "the stop sequence ended the turn before the invented observation"
    assert result.answer == "204 months." and result.stopped_reason == "final_answer"


def test_transcript_is_kept_inside_a_small_context_window(
    scripted_server: ScriptedServer, retriever: Retriever
) -> None:
    """Three searches of ~3 passages each would overflow a 1500-token window; old observations shrink instead."""
    scripted_server.play(
        "Thought: first.\nAction: search_documents\nAction Input: " + TESLA_QUERY,
        "Thought: second.\nAction: search_documents\nAction Input: Super Bowl 50 Broncos Panthers score",
        "Thought: third.\nAction: search_documents\nAction Input: oxygen discovered Priestley Scheele",
        "Thought: done.\nFinal Answer: Tesla died in 1943 [1].",
        context_window=1500,
    )
    # No relevance cut: each search returns all three passages, to fill the window.
    agent = scripted_agent(scripted_server, retriever, agent_step_tokens=128, min_relative_score=0.0)
    result = agent.ask("When did Tesla die?")
    assert result.stopped_reason == "final_answer", result.answer  # the server refuses any prompt over its window
    assert [len(s.passages) for s in result.steps] == [3, 3, 3]
    last = scripted_server.last_messages()
    observations = [m["content"] for m in last if m["content"].startswith("Observation:")]
    assert len(observations) == 3
    assert observations[-1] == "Observation: " + result.steps[-1].observation or "(cut" in observations[-1]
    assert observations[0] != "Observation: " + result.steps[0].observation, "the oldest observation shrank"
    assert result.citations[0].n == 1 and result.citations[0].cited


def test_token_budget_and_model_failures_end_the_run_cleanly(
    scripted_server: ScriptedServer, retriever: Retriever
) -> None:
    long_turn = "Thought: " + "hmm " * 60 + "\nAction: calculator\nAction Input: 2 + 2"
    scripted_server.play(long_turn, long_turn, long_turn)
    budget = scripted_agent(scripted_server, retriever, agent_max_tokens=200).ask("What is 2 + 2?")
    assert budget.stopped_reason == "max_tokens" and 1 <= len(budget.steps) < 3
    assert budget.tokens <= 200

    scripted_server.play("Thought: one step.\nAction: calculator\nAction Input: 2 + 2")  # then the script runs out
    failed = scripted_agent(scripted_server, retriever).ask("What is 2 + 2?")
    assert failed.stopped_reason.startswith("llm_error: ") and "script exhausted" in failed.stopped_reason
    assert len(failed.steps) == 1 and failed.steps[0].observation == "4"
    assert "model failed" in failed.answer

    missing = Agent(retriever, EmbeddedLLM("/nonexistent/model.gguf"), Settings()).ask("What is 2 + 2?")
    assert missing.stopped_reason.startswith("llm_error: ") and "does not exist" in missing.stopped_reason
    assert missing.steps == [] and missing.citations == []


def test_cli_prints_the_trace_to_stderr_and_the_answer_to_stdout(
    scripted_server: ScriptedServer, agent_index: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted_server.play(
        "Thought: Search the lighthouse.\nAction: search_documents\nAction Input: Harbour Lighthouse lit automated",
        "Thought: 1989 - 1871.\nAction: calculator\nAction Input: 1989 - 1871",
        "Final Answer: The lighthouse was kept by hand for 118 years [1].",
    )
    for name, value in {"RAG_LLM_URL": scripted_server.base_url, "RAG_LLM_MODEL": "scripted-react",
                        "RAG_LLM_API_KEY": "k", "RAG_LLM_MAX_RETRIES": "0"}.items():
        monkeypatch.setenv(name, value)
    done = run_cli("rag.agent", "How long was the lighthouse kept by hand?", "--backend", "openai",
                   "--index", str(agent_index), "--max-steps", "4", timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "The lighthouse was kept by hand for 118 years [1]."
    assert "--- step 1" in done.stderr and "Action: calculator" in done.stderr and "Observation: 118" in done.stderr
    assert "[1] lighthouse.pdf, page " in done.stderr

    bad = run_cli("rag.agent", "q", "--max-steps", "0", "--index", str(agent_index))
    assert bad.returncode == 2 and "--max-steps" in bad.stderr


# -------------------------------------------------------------------------------------------------- real models
def test_embedded_model_run_ends_cleanly_within_the_step_limit(retriever: Retriever) -> None:
    """The real 135M model: it rarely follows the format, so any clean ending counts; the shape is what's checked."""
    settings = Settings(llm="embedded", agent_max_steps=3, agent_step_tokens=64, agent_max_tokens=192,
                        temperature=0.0)
    llm = EmbeddedLLM(model_name=SMALL_MODEL, temperature=0.0)
    events = list(Agent(retriever, llm, settings).run("How many years after Tesla's death was the tesla unit named?"))
    result = events[-1].result
    assert isinstance(events[-1], AgentFinished)
    assert all(isinstance(e, (AgentText, AgentStep)) for e in events[:-1])
    assert [e for e in events if isinstance(e, AgentStep)] == result.steps
    assert result.stopped_reason in {"final_answer", "max_steps", "max_tokens", "format_errors"}
    # With a final answer the agent's own; without one (and no model error), the plain answer step's instead.
    assert result.fallback == (result.stopped_reason != "final_answer"), (result.stopped_reason, result.fallback)
    assert len(result.steps) <= 3 and result.tokens <= 192
    assert result.backend == "embedded" and result.answer.strip()
    for step in result.steps:
        assert all(isinstance(getattr(step, k), str) for k in STEP_KEYS) and step.observation
    document = json.loads(json.dumps(result.to_json()))
    assert RESULT_KEYS <= document.keys() and all(s.keys() == STEP_KEYS for s in document["steps"])
    assert result.tokens > 0


@pytest.mark.vllm
def test_vllm_agent_run_via_cli_ends_cleanly(vllm_server, agent_index: Path, run_cli,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"RAG_LLM_URL": vllm_server.base_url, "RAG_LLM_MODEL": vllm_server.model,
                        "RAG_LLM_API_KEY": vllm_server.api_key, "RAG_AGENT_STEP_TOKENS": "96"}.items():
        monkeypatch.setenv(name, value)
    done = run_cli("rag.agent", "How many years after Tesla's death was the tesla unit named?", "--json",
                   "--backend", "openai", "--index", str(agent_index), "--max-steps", "3", timeout=600)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert RESULT_KEYS <= document.keys() and document["backend"] == "openai"
    assert document["model"] == vllm_server.model
    assert document["stopped_reason"] in {"final_answer", "max_steps", "max_tokens", "format_errors"}
    assert 0 < len(document["steps"]) + (document["stopped_reason"] == "final_answer") <= 3
    assert all(step.keys() == STEP_KEYS and step["observation"] for step in document["steps"])


# ----------------------------------------------------------------------------------- where numbers come from
def test_a_number_from_nowhere_is_not_computed_with_and_the_model_is_told(
    scripted_server: ScriptedServer, retriever: Retriever
) -> None:
    """The mistake the 1.5B model made: a year that is in no passage fed to the calculator."""
    scripted_server.play(
        "Thought: I need the years.\nAction: search_documents\nAction Input: " + TESLA_QUERY,
        "Thought: He died in 1944.\nAction: calculator\nAction Input: 1960 - 1944",
        "Thought: He died in 1943 [1].\nAction: calculator\nAction Input: 1960 - 1943",
        "Thought: I know the answer.\nFinal Answer: 17 years: he died in 1943 and the unit was named in 1960 [1].",
    )
    result = scripted_agent(scripted_server, retriever).ask("How many years after Tesla's death was the unit named?")
    search, invented, fixed = result.steps
    assert invented.action == "calculator" and not invented.ok and invented.valid
    assert "1944" in invented.observation and "in no observation" in invented.observation
    assert "1960" not in invented.observation.split("uses")[1].split(",")[0], "only the invented number is named"
    assert fixed.observation == "17" and result.stopped_reason == "final_answer"
    document = result.to_json()
    assert document["verified"] is True and document["unverified"] == []


def test_a_final_answer_with_an_unobserved_number_is_sent_back_once_then_flagged(
    scripted_server: ScriptedServer, retriever: Retriever
) -> None:
    scripted_server.play(
        "Thought: Search.\nAction: search_documents\nAction Input: Tesla died",
        "Thought: I know the answer.\nFinal Answer: Tesla died in 1944 [1].",
        "Thought: I am sure.\nFinal Answer: Tesla died in 1944 [1].",
    )
    result = scripted_agent(scripted_server, retriever).ask("When did Tesla die?")
    search, told = result.steps
    assert "Your Final Answer states 1944" in told.observation
    assert scripted_server.last_messages(2)[-1]["content"].startswith("Observation: Error: Your Final Answer")
    assert result.stopped_reason == "final_answer" and result.answer == "Tesla died in 1944 [1]."
    document = result.to_json()
    assert document["verified"] is False and document["unverified"] == ["1944"]


def test_a_repeated_action_is_pointed_out_and_the_last_step_asks_for_the_answer(
    scripted_server: ScriptedServer, retriever: Retriever
) -> None:
    search = "Thought: Search.\nAction: search_documents\nAction Input: " + TESLA_QUERY
    scripted_server.play(search, search, "Final Answer: He died in 1943 [1].")
    result = scripted_agent(scripted_server, retriever, agent_max_steps=3).ask("When did Tesla die?")
    first, repeated = result.steps
    assert not first.observation.startswith("Note:")
    assert repeated.observation.startswith("Note: you already ran this in step 1")
    assert scripted_server.last_messages(2)[-1]["content"].endswith("Your next reply must be the Final Answer.")
    assert result.stopped_reason == "final_answer"


def test_a_follow_up_is_read_with_the_question_it_follows(scripted_server: ScriptedServer, retriever: Retriever) -> None:
    scripted_server.play(
        "Thought: He is Tesla; I need the year of his death.\nAction: search_documents\nAction Input: " + TESLA_QUERY,
        "Thought: I know the answer.\nFinal Answer: Tesla died in 1943 [1].",
    )
    history = [{"role": "user", "content": "Who was Nikola Tesla?"},
               {"role": "assistant", "content": "An inventor and engineer [1]."}]
    result = scripted_agent(scripted_server, retriever).ask("And when did he die?", history)
    asked = scripted_server.last_messages(0)[-1]["content"]
    assert "And when did he die?" in asked and "follows the earlier question: Who was Nikola Tesla?" in asked
    assert result.question == "And when did he die?" and result.stopped_reason == "final_answer"
    assert result.answer == "Tesla died in 1943 [1]." and result.grounding.verified
