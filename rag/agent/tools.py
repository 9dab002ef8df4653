"""The agent's tools: typed functions (``rag.agent.tool``) over document search, a calculator and the sandbox.

    registry = PassageRegistry()
    tools = default_tools(retriever, settings, registry)
    output = tools[0]("Tesla death year")      # search_documents
    print(output.text)                          # "[1] (Nikola_Tesla.md)\n<<<\n...\n>>>"

Each returns a ``ToolOutput``: the observation text the model reads, whether the call worked, and (for
``search_documents``) the passages it returned. A tool never raises for anything its input does: a bad expression,
a blocked import or an empty query becomes an observation starting with ``Error:`` that the model can act on.

``search_documents`` numbers passages through a ``PassageRegistry`` shared by one agent run, so a passage keeps
its number ``[n]`` across searches and the final answer's ``[n]`` maps back to it.
"""

from __future__ import annotations

from rag.agent.calculator import CalculatorError, calculate
from rag.agent.tool import Tool, ToolOutput, tool
from rag.answer.citations import split_sentences
from rag.answer.context import Passage, format_passages, label
from rag.index.keyword import tokenize
from rag.retrieval.retriever import Hit, Retriever
from rag.sandbox import run_program
from rag.sandbox.child import ALLOWED_LIST_TEXT
from rag.settings import Settings, get_settings

PYTHON_MAX_OUTPUT = 2_000  # characters of program output shown to the model


# ------------------------------------------------------------------------------------------ search_documents
class PassageRegistry:
    """Numbers passages for one agent run: the first time a chunk is returned it gets the next number, and it
    keeps that number whenever a later search returns it again."""

    def __init__(self) -> None:
        self._by_chunk: dict[int, Passage] = {}

    def number(self, hit: Hit) -> Passage:
        passage = self._by_chunk.get(hit.chunk.id)
        if passage is None:
            passage = Passage(len(self._by_chunk) + 1, hit, hit.chunk.text)
            self._by_chunk[hit.chunk.id] = passage
        return passage

    def get(self, n: int) -> Passage | None:
        return next((p for p in self._by_chunk.values() if p.n == n), None)

    @property
    def passages(self) -> list[Passage]:
        """Every passage returned so far, by number."""
        return sorted(self._by_chunk.values(), key=lambda p: p.n)

    @property
    def numbers(self) -> set[int]:
        return {p.n for p in self._by_chunk.values()}

    def __len__(self) -> int:
        return len(self._by_chunk)


def search_passages(query: str, *, retriever: Retriever, registry: PassageRegistry, k: int = 3,
                    min_relative_score: float = 0.0) -> ToolOutput:
    """The ``k`` best passages for ``query`` (without those scoring under ``min_relative_score`` of the best),
    numbered [n] for the whole run, each with its source (and page)."""
    retrieval = retriever.retrieve(query, k)
    if not retrieval.hits:
        return ToolOutput("No passages found: the index is empty or nothing matches. Try other words.")
    passages = tuple(registry.number(hit) for hit in retrieval.relevant(min_relative_score))
    text = format_passages(list(passages))
    if not retrieval.evidence.found:
        text = "Note: these passages may not answer the query (low retrieval confidence).\n\n" + text
    short = "\n".join(f"[{p.n}] ({label(p.hit)}) {key_sentences(p.text, query)}" for p in passages)
    return ToolOutput(text, passages=passages, short=short)


def key_sentences(text: str, query: str, keep: int = 2) -> str:
    """The ``keep`` sentences of ``text`` sharing most words with ``query``, in passage order: the compact form
    of a passage when the transcript must shrink (the rest is elided with "…")."""
    sentences = split_sentences(text)
    if len(sentences) <= keep:
        return " ".join(sentences)
    words = set(tokenize(query))
    scored = sorted(range(len(sentences)), key=lambda i: (-len(words & set(tokenize(sentences[i]))), i))
    chosen = sorted(scored[:keep])
    return " … ".join(sentences[i] for i in chosen) + " …"


# ------------------------------------------------------------------------------------------------ calculator
@tool
def calculator(expression: str) -> ToolOutput:
    """Evaluate one arithmetic expression, e.g. (1960 - 1943) * 12; + - * / // % ** and sqrt, log, round.

    Args:
        expression: an arithmetic expression with numbers only
    """
    try:  # safe arithmetic over an AST allow-list (rag.agent.calculator), never eval
        return ToolOutput(calculate(expression))
    except CalculatorError as exc:
        return ToolOutput(f"Error: {exc}", ok=False)


# ---------------------------------------------------------------------------------------------------- python
def run_python(code: str, *, timeout_s: float = 5.0, memory_mb: int = 256,
               require_os_layers: bool = False) -> ToolOutput:
    """Run a small program in the sandbox (rag.sandbox, PAL style): what it printed, or ``Error: <why>``."""
    result = run_program(code, timeout_s=timeout_s, memory_mb=memory_mb, max_output=PYTHON_MAX_OUTPUT,
                         require_os_layers=require_os_layers)
    printed = result.stdout.strip()
    if not result.ok:
        partial = f"\nPrinted before the error:\n{printed}" if printed else ""
        return ToolOutput(f"Error: {result.error}{partial}", ok=False)
    if not printed:
        return ToolOutput(
            "Error: the program printed nothing; print the result or define solution() returning it", ok=False
        )
    return ToolOutput(printed)


# ----------------------------------------------------------------------------------------------------- the set
def default_tools(retriever: Retriever, settings: Settings | None = None,
                  registry: PassageRegistry | None = None) -> list[Tool]:
    """search_documents, calculator and python, configured from the settings; ``registry`` numbers passages
    (give each agent run its own)."""
    s = settings or get_settings()
    registry = registry if registry is not None else PassageRegistry()

    @tool
    def search_documents(query: str) -> ToolOutput:
        """Search the user's documents; returns numbered passages [n] with their source, to cite as [n].

        Args:
            query: what to look for, in a few words
        """
        return search_passages(query, retriever=retriever, registry=registry, k=s.agent_search_k,
                               min_relative_score=s.min_relative_score)

    def python(code: str) -> ToolOutput:
        return run_python(code, timeout_s=s.agent_python_timeout, memory_mb=s.agent_python_memory_mb,
                          require_os_layers=s.agent_sandbox_strict)

    python.__doc__ = PYTHON_DOC  # the allowed imports are a value, which a docstring literal cannot hold
    return [search_documents, calculator, tool(python)]


PYTHON_DOC = f"""Run a short Python program and see what it prints (define solution() returning the result, or print
    it); only these imports work: {ALLOWED_LIST_TEXT}; no files or network.

    Args:
        code: a Python program
    """
