"""What an agent run reports as it goes: the model's text, each step, and the final result."""

from __future__ import annotations

from dataclasses import dataclass

from rag.answer.citations import Citation
from rag.answer.grounding import Grounding

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

    def to_json(self) -> dict[str, object]:
        return {"thought": self.thought, "action": self.action, "input": self.input, "observation": self.observation}


@dataclass
class AgentResult:
    question: str
    answer: str  # the Final Answer (markers that point nowhere removed), or why the run stopped without one
    steps: list[AgentStep]
    citations: list[Citation]  # cited passages (cited=True), or every passage retrieved (cited=False) if none
    stopped_reason: str  # "final_answer" | "max_steps" | "max_tokens" | "llm_error: <message>"
    backend: str
    model: str
    seconds: float
    tokens: int = 0  # tokens the model wrote over the run
    thought: str = ""  # the thought that came with the final answer
    fallback: bool = False  # no final answer, so ``answer`` and ``citations`` come from the plain answer step
    refused: bool = False  # the plain answer step found no evidence (only with ``fallback``)
    grounding: Grounding | None = None  # the answer checked against its cited passages and the tool results

    @property
    def answered(self) -> bool:
        return self.stopped_reason == FINAL_ANSWER

    def to_json(self) -> dict[str, object]:
        return {
            "answer": self.answer,
            "steps": [s.to_json() for s in self.steps],
            "citations": [c.to_json() for c in self.citations],
            "stopped_reason": self.stopped_reason,
            "question": self.question,
            "backend": self.backend,
            "model": self.model,
            "seconds": round(self.seconds, 3),
            "tokens": self.tokens,
            "fallback": self.fallback,
            "refused": self.refused,
            "verified": self.grounding is None or self.grounding.verified,
            "unverified": list(self.grounding.missing) if self.grounding else [],
        }


@dataclass(frozen=True)
class AgentFinished:
    result: AgentResult


AgentEvent = AgentText | AgentStep | AgentFinished
