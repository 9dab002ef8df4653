"""Question in, grounded answer out: rewrite → retrieve → (refuse without evidence) → prompt → stream → cite.

``Answerer.run`` yields events as they happen, so a UI can show the passages first and then the answer word by
word; ``Answerer.ask`` collects them into one ``Answer``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from rag.answer.citations import Citation, cited_numbers, make_citations
from rag.answer.context import Passage, fit_passages, format_passages
from rag.answer.rewrite import standalone_query
from rag.answer.thinking import hide_thinking
from rag.llm import LLM, LLMError, Message, Usage
from rag.prompts import load
from rag.retrieval.evidence import Evidence
from rag.retrieval.retriever import Hit, Retriever
from rag.settings import Settings, get_settings

NOT_FOUND = "I could not find this in your documents."
MODEL_REFUSAL = "The documents do not contain the answer."
_PROMPT_MARGIN = 16  # tokens of the chat template around the messages


@dataclass
class Answer:
    question: str
    query: str  # what was searched (the question made standalone)
    answer: str
    refused: bool
    citations: list[Citation]
    evidence: Evidence | None
    backend: str
    model: str
    seconds: float
    usage: Usage | None = None
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "answer": self.answer,
            "refused": self.refused,
            "citations": [c.to_json() for c in self.citations],
            "backend": self.backend,
            "model": self.model,
            "seconds": round(self.seconds, 3),
            "query": self.query,
            "evidence": self.evidence.to_json() if self.evidence else None,
            "usage": {"prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens}
            if self.usage
            else None,
            "error": self.error,
        }


@dataclass(frozen=True)
class Retrieved:
    """Passages found; ``refused`` when none of them is evidence enough to ask the model."""

    query: str
    hits: list[Hit]
    evidence: Evidence
    refused: bool


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Finished:
    answer: Answer


Event = Retrieved | Delta | Finished


@dataclass
class Answerer:
    retriever: Retriever
    llm: LLM
    settings: Settings = field(default_factory=get_settings)

    def ask(self, question: str, history: list[Message] | None = None) -> Answer:
        for event in self.run(question, history):
            if isinstance(event, Finished):
                return event.answer
        raise AssertionError("run() always ends with Finished")

    def run(self, question: str, history: list[Message] | None = None) -> Iterator[Event]:
        started = time.perf_counter()
        history = list(history or [])
        s = self.settings
        query = standalone_query(question, history, self.llm, s.rewrite)
        retrieval = self.retriever.retrieve(query, s.top_k)
        refused = not retrieval.evidence.found or not retrieval.hits
        yield Retrieved(query, retrieval.hits, retrieval.evidence, refused)

        def finish(text: str, refused: bool, citations: list[Citation], error: str | None = None) -> Finished:
            return Finished(
                Answer(question, query, text, refused, citations, retrieval.evidence, self.llm.backend,
                       self.llm.model, time.perf_counter() - started, self.llm.last_usage if not refused else None,
                       error)
            )

        if refused:
            yield Delta(NOT_FOUND)
            closest = [Passage(i, h, h.chunk.text) for i, h in enumerate(retrieval.hits[:3], start=1)]
            yield finish(NOT_FOUND, True, self._citations(closest, query, cited=set()))
            return

        messages, passages = self._messages(question, history, retrieval.relevant(s.min_relative_score))
        shown: list[str] = []
        try:
            for delta in hide_thinking(self.llm.stream(messages, max_tokens=s.max_answer_tokens,
                                                       temperature=s.temperature)):
                shown.append(delta)
                yield Delta(delta)
        except LLMError as exc:
            partial = "".join(shown).strip()
            yield finish(partial, False, self._citations(passages, partial, cited=set()), error=str(exc))
            return

        text, cited = cited_numbers("".join(shown).strip(), {p.n for p in passages})
        if MODEL_REFUSAL.lower().rstrip(".") in text.lower():
            yield finish(text, True, self._citations(passages, query, cited=set()))
            return
        by_number = {p.n: p for p in passages}
        ordered = [by_number[n] for n in cited] or passages  # nothing cited: list the sources consulted
        yield finish(text, False, self._citations(ordered, text, cited=set(cited)))

    def _messages(self, question: str, history: list[Message], hits: list[Hit]) -> tuple[list[Message], list[Passage]]:
        """System rules, a little history, and as many passages as the context window holds."""
        system = load("answer_system")
        recent = [m for m in history if m.get("role") in ("user", "assistant")][-2 * self.settings.history_turns :]
        template = load("answer_user")
        fixed = self.llm.count_tokens(system) + sum(self.llm.count_tokens(m["content"]) for m in recent)
        fixed += self.llm.count_tokens(template.format(passages="", question=question)) + _PROMPT_MARGIN
        budget = self.llm.context_window - self.settings.max_answer_tokens - fixed
        passages = fit_passages(hits, budget, self.llm.count_tokens)
        user = template.format(passages=format_passages(passages), question=question)
        return [{"role": "system", "content": system}, *recent, {"role": "user", "content": user}], passages

    def _citations(self, passages: list[Passage], claim_source: str, cited: set[int]) -> list[Citation]:
        return make_citations(passages, claim_source, cited, self.retriever.embedder.embed)
