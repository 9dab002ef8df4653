"""What an answer is, once it leaves the pipeline: one typed contract for plain and agent answers.

The answer step (``rag.answer.answerer``) and the agent (``rag.agent.loop``) work with richer objects of their own;
what they hand to everything else — ``--json`` on the command line, the page, the note above an answer, the
Markdown export, the kept conversations and the HTTP API — is an ``AnswerResult``. Conversations store it with its
``schema_version``; ``AnswerResult.load`` reads what an earlier release stored (no version: the plain answer's
``to_json()`` dict, or the agent's, which had no ``checks``, ``refused_by`` or ``candidate``).

How a source is named for people and for the model (``report.pdf, page 2``; ``deck.pptx, slide 3``) is decided
here once, from the document's stored kind: ``source_label``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 2  # 1: the untyped dicts of the releases before it (no "schema_version" key)

RefusedBy = Literal["retrieval", "model", "check"]


def page_unit(kind: str | None) -> str:
    """What a document's numbered parts are called: slides in a slide deck, pages otherwise."""
    return "slide" if kind == "pptx" else "page"


SECTION_CHARS = 60  # a longer heading is cut at a word, with an ellipsis


def source_label(source: str, page: int | None = None, kind: str | None = None, section: str | None = None) -> str:
    """``report.pdf, page 2``, ``deck.pptx, slide 3``, or the bare label when the document has no pages; with the
    heading the passage sits under, ``guide.md › Green tea``, so that passages of one file tell apart. The one rule
    for the prompt (which names no section: the model's input stays as measured), the command line, the page and
    the export."""
    label = f"{source}, {page_unit(kind)} {page}" if page else source
    if section and section.strip() and not _names_the_file(section, source):
        heading = " ".join(section.split())
        if len(heading) > SECTION_CHARS:
            heading = heading[:SECTION_CHARS].rsplit(" ", 1)[0] + "…"
        label += f" › {heading}"
    return label


def _names_the_file(heading: str, source: str) -> bool:
    """Whether a heading only repeats the file's name ("Tea brewing guide" in tea-brewing-guide.md): no news."""
    def words(text: str) -> str:
        return " ".join("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())

    return words(heading) == words(source.rsplit("/", 1)[-1].rsplit(".", 1)[0])


def kind_of(source: str) -> str | None:
    """The kind a label's suffix implies: only for answers an earlier release stored, which kept no kind."""
    suffix = source.lower().rpartition(".")[2]
    return suffix if suffix in ("pdf", "pptx") else None


class Citation(BaseModel):
    """A passage an answer rests on (``cited``) or was given, with the sentence that best supports the answer."""

    model_config = ConfigDict(frozen=True)

    n: int  # the number the answer cites as [n]
    source: str  # the document's label
    page: int | None = None  # 1-based page, or slide number; None when the document has none
    text: str  # the passage
    support: str = ""  # the sentence of the passage that best supports the answer
    cited: bool = False  # False: a source consulted, or a closest passage of a refusal
    kind: str | None = None  # the document's kind (pdf, pptx, docx, html, md, txt): names its pages
    section: str | None = None  # the heading the passage sits under, when the document has one
    chunk_id: int | None = None

    @property
    def where(self) -> str:
        """``report.pdf, page 2 › Results`` (``source_label``)."""
        return source_label(self.source, self.page, self.kind, self.section)


class Step(BaseModel):
    """One agent step as it is kept and shown: what the model thought and did, and what it observed."""

    thought: str = ""
    action: str = ""
    input: str = ""
    observation: str = ""


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class AnswerResult(BaseModel):
    """An answer (plain or agent), its sources, and whether it can be trusted."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = SCHEMA_VERSION
    mode: Literal["answer", "agent"] = "answer"
    question: str = ""
    query: str = ""  # what was searched (the question made standalone)
    answer: str
    refused: bool = False
    # "retrieval": no evidence, the model was not asked; "model": it said so; "check": withheld as unconfirmed
    refused_by: RefusedBy | None = None
    citations: list[Citation] = Field(default_factory=list)
    verified: bool = True  # False: a check failed (the note above the answer says which)
    unverified: list[str] = Field(default_factory=list)  # names and numbers none of its cited passages holds
    checks: list[str] = Field(default_factory=list)  # other reasons to check it, for people
    confidence: float | None = None  # the least probable token's probability, when the backend reports it
    # How likely the answer is right, from the model's calibrator (rag.answer.calibrator); None: refused, or the
    # model has none. ``calibrated``: whether ``verified`` was decided by it (else by the rule-based checks).
    p_correct: float | None = None
    calibrated: bool = False
    candidate: str | None = None  # the model's own words, when the answer was withheld (refused_by == "check")
    error: str | None = None  # the model failed: what it said
    backend: str = ""
    model: str = ""
    seconds: float = 0.0
    usage: Usage | None = None
    evidence: dict[str, Any] | None = None  # rag.retrieval.evidence.Evidence.to_json()
    # agent mode
    steps: list[Step] = Field(default_factory=list)
    stopped_reason: str | None = None  # final_answer, max_steps, max_tokens, format_errors, llm_error: ...
    fallback: bool = False  # no final answer: the plain answer step answered instead
    tokens: int | None = None  # tokens the agent wrote over the run
    thought: str = ""  # the thought that came with the agent's final answer

    @property
    def withheld(self) -> bool:
        return self.refused_by == "check"

    @property
    def any_cited(self) -> bool:
        return any(c.cited for c in self.citations)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (``rag.ask``, ``rag.agent``) and what conversations keep."""
        return self.model_dump(mode="json")

    @classmethod
    def load(cls, data: dict[str, Any]) -> AnswerResult:
        """An answer as kept by this or an earlier release (those stored no ``schema_version``)."""
        if data.get("schema_version", 1) < 2:
            data = _from_v1(data)
        return cls.model_validate(data)


def _from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """The untyped dict of the releases before the contract: the same keys for the most part; the agent's had
    ``steps`` and no ``mode``; citations no ``kind`` (a .pptx label implies slides); ``usage`` may be null."""
    upgraded = {k: v for k, v in data.items() if v is not None or k in ("refused_by", "error", "candidate")}
    upgraded["schema_version"] = SCHEMA_VERSION
    upgraded.setdefault("answer", "")
    if "steps" in data or "stopped_reason" in data:
        upgraded["mode"] = "agent"
    upgraded["citations"] = [{**c, "kind": c.get("kind") or kind_of(str(c.get("source", "")))}
                             for c in data.get("citations") or []]
    upgraded["steps"] = [{k: str(v or "") for k, v in s.items() if k in Step.model_fields}
                         for s in data.get("steps") or []]
    return upgraded
