"""Agent mode: a ReAct loop over the tools of ``rag.agent.tools``, ending in an answer that cites the passages it used.

The model works in a plain-text format any chat model can follow (prompts ``react_system``, ``react_examples``,
``pal_examples``)::

    Thought: I need the year he died.
    Action: search_documents
    Action Input: Tesla death
    Observation: [1] (Nikola_Tesla.md) ...        <- written by the loop, never by the model
    ...
    Final Answer: ... [1]

Each model turn is one chat message; each observation goes back as a user message ``Observation: ...``.
Generation stops at ``"\\nObservation:"`` so the model cannot invent results. Replies are parsed strictly: a reply
without the format, with two actions, with an action and a final answer at once, naming an unknown tool, or with an
input the tool's schema rejects becomes an observation saying what was wrong, and the model gets another turn.
Nothing the model writes can crash the loop; it ends with one of the stop reasons ``final_answer``, ``max_steps``
(settings ``agent_max_steps``), ``max_tokens`` (``agent_max_tokens`` over the run, or a transcript that no longer
fits the context window), ``format_errors`` (``agent_max_format_errors`` malformed replies in a row: small models
answer in free text whatever they are told) or ``llm_error: <message>``. Without a final answer (and without an
LLM error) the plain grounded answer step answers instead (``agent_fallback``), and the result says so.

The transcript is kept inside the model's context window: before each turn it is counted with the model's own
tokenizer and, if needed, older observations are shortened, then dropped, then the newest is cut.

For the UI::

    agent = Agent(retriever, llm, settings)
    for event in agent.run(question):
        if isinstance(event, AgentText): ...          # the model's reply to the current turn, as it is written
        elif isinstance(event, AgentStep): ...        # thought, action, input, observation (as soon as known)
        elif isinstance(event, AgentFinished): event.result   # AgentResult: answer, steps, citations, ...

CLI: ``python -m rag.agent "QUESTION" [--json] [--backend NAME] [--index DIR] [--max-steps N]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from rag.agent.claims import misstated_note, misstated_numbers
from rag.agent.events import (
    FINAL_ANSWER,
    FORMAT_ERRORS,
    MAX_STEPS,
    MAX_TOKENS,
    AgentEvent,
    AgentFinished,
    AgentResult,
    AgentStep,
    AgentText,
)
from rag.agent.provenance import CHECKED_TOOLS, unobserved_note, unobserved_numbers
from rag.agent.reply import Reply, clean_reply, parse_reply
from rag.agent.tools import PassageRegistry, Tool, ToolOutput, default_tools
from rag.agent.transcript import MIN_STEP_TOKENS, Counter, Turn, fit_transcript
from rag.answer.answerer import Answerer
from rag.answer.citations import cited_numbers, make_citations
from rag.answer.result import Citation
from rag.answer.grounding import check_grounding
from rag.answer.rewrite import with_earlier_question
from rag.llm import LLM, LLMError, Message
from rag.prompts import load
from rag.retrieval.retriever import Retriever
from rag.settings import Settings, get_settings

STOP = ["\nObservation:"]
LAST_STEP_NOTE = "\nNote: you have one step left. Your next reply must be the Final Answer."


def system_prompt(tools: Iterable[Tool]) -> str:
    """The ReAct instructions with the tool list and the few-shot examples whose tools are available."""
    tools = list(tools)
    names = {t.name for t in tools}
    examples = []
    if {"search_documents", "calculator"} <= names:
        examples.append(load("react_examples"))
    if {"search_documents", "python"} <= names:
        examples.append(load("pal_examples"))
    return (
        load("react_system")
        .replace("{tools}", "\n".join(t.describe() for t in tools))
        .replace("{tool_names}", ", ".join(t.name for t in tools))
        .replace("{examples}", "\n\n".join(examples))
        .strip()
    )


@dataclass
class Agent:
    retriever: Retriever
    llm: LLM
    settings: Settings = field(default_factory=get_settings)
    tools: Callable[[PassageRegistry], list[Tool]] | None = None  # per-run tool factory; None: default_tools

    def ask(self, question: str, history: list[Message] | None = None) -> AgentResult:
        """Run to the end and return the result."""
        for event in self.run(question, history):
            if isinstance(event, AgentFinished):
                return event.result
        raise AssertionError("run() always ends with AgentFinished")

    def run(self, question: str, history: list[Message] | None = None) -> Iterator[AgentEvent]:
        """Yield the model's text as it is written (``AgentText``), each ``AgentStep`` as soon as its observation is
        known, then one ``AgentFinished``. ``history``: the conversation so far (a follow-up is read with the
        question it follows)."""
        started = time.perf_counter()
        s = self.settings
        history = list(history or [])
        task = with_earlier_question(question, history)  # what the model reads; its numbers are not evidence
        registry = PassageRegistry()
        tool_list = self.tools(registry) if self.tools else default_tools(self.retriever, s, registry)
        tools = {t.name: t for t in tool_list}
        system = system_prompt(tool_list)
        counter = Counter(self.llm)
        turns: list[Turn] = []
        steps: list[AgentStep] = []
        calls: dict[tuple[str, str], int] = {}
        seen = [question]  # the question and every observation that was not an error: where numbers may come from
        tool_results: list[str] = []  # results of tools other than search: sources of the final answer too
        final_warned = False
        used = 0
        format_errors = 0  # in a row
        stopped, final, final_thought = MAX_STEPS, "", ""

        for number in range(1, s.agent_max_steps + 1):
            step_started = time.perf_counter()
            want = min(s.agent_step_tokens, s.agent_max_tokens - used)
            if want < MIN_STEP_TOKENS:
                stopped = MAX_TOKENS
                break
            try:  # counting tokens loads the embedded model: a missing model fails here first
                fitted = fit_transcript(system, task, turns, want, self.llm.context_window, counter)
                if fitted is None:
                    stopped = MAX_TOKENS
                    break
                messages, budget = fitted
                pieces: list[str] = []
                generation = self.llm.stream(messages, max_tokens=budget, temperature=s.temperature, stop=STOP)
                try:
                    for piece in generation:
                        pieces.append(piece)
                        yield AgentText(number, piece)
                finally:
                    generation.close()
                raw = "".join(pieces)
            except LLMError as exc:
                stopped = f"llm_error: {exc}"
                break
            except Exception as exc:  # noqa: BLE001 - a backend bug must not take the UI down either
                stopped = f"llm_error: {type(exc).__name__}: {exc}"
                break
            usage = generation.usage
            written = usage.completion_tokens if usage else counter(raw)
            used += written
            reply_text = clean_reply(raw)
            reply = parse_reply(reply_text)
            invented = unobserved_numbers(reply.final, seen) if reply.final is not None else []
            misstated = (misstated_numbers(reply.final, [p.text for p in registry.passages], tool_results, question)
                         if reply.final is not None and not invented else [])
            if reply.final is not None and (not (invented or misstated) or final_warned
                                            or number == s.agent_max_steps):
                stopped, final, final_thought = FINAL_ANSWER, reply.final, reply.thought
                break
            if invented or misstated:  # once per run: the model may search for the right number and answer again
                final_warned = True
                note = unobserved_note(invented, final=True) if invented else misstated_note(misstated)
                reply = Reply(reply.thought, None, None, None, note)
            if reply.error and written >= budget:
                reply = Reply(reply.thought, reply.action, reply.input, None,
                              f"{reply.error} Your reply was cut off at {budget} tokens: keep the Thought short.")
            output, valid = self._act(reply, tools, calls, number, seen)
            if output.ok and valid:
                seen.append(output.text)
                if not output.passages:
                    tool_results.append(output.text)
            if number == s.agent_max_steps - 1:
                output = ToolOutput(output.text + LAST_STEP_NOTE, output.ok, output.passages, output.short)
            step = AgentStep(
                reply.thought, reply.action or "", reply.input or "", output.text, valid, output.ok,
                tuple(p.n for p in output.passages), reply_text, time.perf_counter() - step_started,
            )
            turns.append(Turn(reply_text or "(empty reply)", output.text, output.short or _shorten(output.text)))
            steps.append(step)
            yield step
            format_errors = format_errors + 1 if reply.error and not (invented or misstated) else 0
            if format_errors >= s.agent_max_format_errors:
                stopped = FORMAT_ERRORS
                break

        done = {"question": question, "steps": steps, "stopped_reason": stopped, "backend": self.llm.backend,
                "model": self.llm.model, "tokens": used, "thought": final_thought}
        if stopped == FINAL_ANSWER:
            answer, cited = cited_numbers(final, registry.numbers)
            passages = [p.text for p in (registry.get(n) for n in cited) if p is not None]
            passages = passages or [p.text for p in registry.passages]
            # Still stating a computed number as another thing's value after the note: flagged, not trusted.
            wrong = misstated_numbers(answer, [p.text for p in registry.passages], tool_results, question)
            result = AgentResult(**done, answer=answer, citations=self._citations(registry, answer, cited, question),
                                 grounding=check_grounding(answer, [*passages, *tool_results], question),
                                 checks=[m.reason for m in wrong], seconds=time.perf_counter() - started)
        elif s.agent_fallback and not stopped.startswith("llm_error"):
            # No final answer: the plain grounded answer is worth more to the user than the stop reason alone.
            plain = Answerer(self.retriever, self.llm, s).ask(question, history)
            answer = _stop_message(f"llm_error: {plain.error}", s.agent_max_steps) if plain.error else plain.answer
            result = AgentResult(**done, answer=answer, citations=plain.citations, fallback=True,
                                 refused=plain.refused, refused_by=plain.refused_by, grounding=plain.grounding,
                                 checks=plain.checks, candidate=plain.candidate,
                                 seconds=time.perf_counter() - started)
        else:
            result = AgentResult(**done, answer=_stop_message(stopped, s.agent_max_steps),
                                 citations=self._citations(registry, question, [], question),
                                 seconds=time.perf_counter() - started)
        yield AgentFinished(result)

    def _act(self, reply: Reply, tools: dict[str, Tool], calls: dict[tuple[str, str], int],
             number: int, seen: list[str]) -> tuple[ToolOutput, bool]:
        """Run the reply's action; anything wrong with it (a number from nowhere included) becomes an error
        observation."""
        if reply.error:
            return ToolOutput(reply.error, ok=False), False
        assert reply.action is not None and reply.input is not None
        tool = tools.get(reply.action) or next(
            (t for name, t in tools.items() if name.lower() == reply.action.lower()), None
        )
        if tool is None:
            return ToolOutput(
                f"Error: unknown tool '{reply.action}'. Use one of: {', '.join(tools)}.", ok=False
            ), False
        invented = unobserved_numbers(reply.input, seen) if tool.name in CHECKED_TOOLS else []
        if invented:
            return ToolOutput(unobserved_note(invented, final=False), ok=False), True
        output = tool(reply.input)
        key = (tool.name, " ".join(reply.input.split()).lower())
        if key in calls:
            note = (f"Note: you already ran this in step {calls[key]}; the result is the same. Use it, try "
                    f"something else, or give the Final Answer.\n")
            output = ToolOutput(note + output.text, output.ok, output.passages, output.short)
        else:
            calls[key] = number
        return output, True

    def _citations(self, registry: PassageRegistry, claim_source: str, cited: list[int],
                   question: str) -> list[Citation]:
        """Cited passages in order of citation; if none was cited, every passage retrieved, as consulted."""
        passages = [p for p in (registry.get(n) for n in cited) if p is not None] or registry.passages
        return make_citations(passages, claim_source, set(cited), self.retriever.embedder.embed, question)


def _stop_message(stopped: str, max_steps: int) -> str:
    if stopped == FORMAT_ERRORS:
        return "No final answer: the model did not follow the agent format. The steps are shown."
    if stopped == MAX_STEPS:
        return f"No final answer within {max_steps} steps. The steps and the passages consulted are shown."
    if stopped == MAX_TOKENS:
        return "No final answer: the agent used up its token budget. The steps and the passages consulted are shown."
    return f"The model failed before giving a final answer ({stopped.removeprefix('llm_error: ')})."


def _shorten(text: str, words: int = 40) -> str:
    parts = text.split()
    return text if len(parts) <= words else " ".join(parts[:words]) + " … (shortened)"
