"""What an agent run reports as it goes: the model's text, each step, and the final result."""

from __future__ import annotations

from dataclasses import dataclass, field

from rag.answer.grounding import Grounding
from rag.answer.result import AnswerResult, Citation, RefusedBy, Step

FINAL_ANSWER = "final_answer"
MAX_STEPS = "max_steps"
MAX_TOKENS = "max_tokens"
FORMAT_ERRORS = "format_errors"  # the model kept ignoring the format (small models do): no use going on


@dataclass(frozen=True)
class AgentText:
    """A piece of the model's reply to turn ``step`` (1-based), as it is written: lets a UI show the thought grow."""

    step: int
    text: str


@dataclass(frozen=True)
class AgentStep:
    """One model turn that was not a final answer, with what the loop observed for it."""

    thought: str
    action: str  # the tool name as the model wrote it ("" when the reply had no usable Action line)
    input: str  # the Action Input as the model wrote it
    observation: str  # the tool's result, or what was wrong with the reply
    valid: bool = True  # False: the reply was malformed or named an unknown tool (the observation says why)
    ok: bool = True  # False: the observation is an error (a rejected reply, or a tool that failed on its input)
    passages: tuple[int, ...] = ()  # numbers [n] of the passages this step returned (search_documents)
    raw: str = ""  # the model's reply as it wrote it (cut at the stop sequence)
    seconds: float = 0.0

    def record(self) -> Step:
        """The step as it is kept and shown (``rag.answer.result.Step``)."""
        return Step(thought=self.thought, action=self.action, input=self.input, observation=self.observation)


@dataclass(kw_only=True)
class AgentResult:
    """The agent's own record of a run; ``result()`` is what leaves it (the same contract as a plain answer's)."""

    question: str
    answer: str  # the Final Answer (markers that point nowhere removed), or why the run stopped without one
    steps: list[AgentStep]
    citations: list[Citation]  # cited passages (cited=True), or every passage retrieved (cited=False) if none
    stopped_reason: str  # "final_answer" | "max_steps" | "max_tokens" | "format_errors" | "llm_error: <message>"
    backend: str
    model: str
    seconds: float
    tokens: int = 0  # tokens the model wrote over the run
    thought: str = ""  # the thought that came with the final answer
    fallback: bool = False  # no final answer, so the rest comes from the plain answer step
    refused: bool = False  # the plain answer step refused (only with ``fallback``)
    refused_by: RefusedBy | None = None  # why (only with ``fallback``)
    grounding: Grounding | None = None  # the answer checked against its cited passages and the tool results
    checks: list[str] = field(default_factory=list)  # other checks: the plain step's (``fallback``) or ``claims``'
    candidate: str | None = None  # the plain answer step's withheld words (only with ``fallback``)

    @property
    def answered(self) -> bool:
        return self.stopped_reason == FINAL_ANSWER

    @property
    def verified(self) -> bool:
        return (self.grounding is None or self.grounding.verified) and not self.checks

    def result(self) -> AnswerResult:
        return AnswerResult(
            mode="agent", question=self.question, answer=self.answer, refused=self.refused,
            refused_by=self.refused_by, citations=self.citations, verified=self.verified,
            unverified=list(self.grounding.missing) if self.grounding else [], checks=self.checks,
            candidate=self.candidate, backend=self.backend, model=self.model,
            seconds=round(self.seconds, 3), steps=[s.record() for s in self.steps],
            stopped_reason=self.stopped_reason, fallback=self.fallback, tokens=self.tokens, thought=self.thought,
        )

    def to_json(self) -> dict[str, object]:
        return self.result().to_json()


@dataclass(frozen=True)
class AgentFinished:
    result: AgentResult


AgentEvent = AgentText | AgentStep | AgentFinished
