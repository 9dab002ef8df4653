"""Agent mode: a ReAct loop over the tools of ``rag.tools``, ending in an answer that cites the passages it used.

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

CLI: ``python -m rag.agent "QUESTION" [--json] [--backend embedded|openai] [--index DIR] [--max-steps N]``.
"""

from __future__ import annotations

import re
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from rag.answer import Answerer, Citation, make_citations, strip_thinking
from rag.citations import cited_numbers
from rag.llm import LLM, LLMError, Message
from rag.prompts import load
from rag.retrieve import Retriever
from rag.settings import Settings, get_settings
from rag.tools import PassageRegistry, Tool, ToolOutput, default_tools

STOP = ["\nObservation:"]
MIN_STEP_TOKENS = 32  # a turn with less room than this cannot hold a Thought and an Action
_MESSAGE_OVERHEAD = 8  # chat-template tokens around each message (ChatML uses 5)
_PROMPT_MARGIN = 16  # the assistant header that opens the reply, and rounding
_DROPPED = "(removed to fit the context window; the passages keep their numbers [n])"

FINAL_ANSWER = "final_answer"
MAX_STEPS = "max_steps"
MAX_TOKENS = "max_tokens"
FORMAT_ERRORS = "format_errors"  # the model kept ignoring the format (small models do): no use going on


# ---------------------------------------------------------------------------------------------------- events
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
        }


@dataclass(frozen=True)
class AgentFinished:
    result: AgentResult


AgentEvent = AgentText | AgentStep | AgentFinished


# ---------------------------------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class Reply:
    """A model turn, parsed: an action, a final answer, or an ``error`` telling the model how to fix it."""

    thought: str = ""
    action: str | None = None
    input: str | None = None
    final: str | None = None
    error: str | None = None


_LABEL = re.compile(
    r"^[ \t]*[*_]{0,2}(thought|action input|action|final answer|observation|question)[*_]{0,2}[ \t]*:[*_]{0,2}[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_FORMAT_HINT = (
    "Reply with 'Thought: ...', then 'Action: <tool name>' and 'Action Input: <input>' on their own lines to use a "
    "tool, or with 'Final Answer: ...' when you know the answer."
)


def clean_reply(text: str) -> str:
    """The reply without a reasoning model's <think> block, cut where the model starts writing an Observation."""
    text = strip_thinking(text)
    match = re.search(r"^[ \t]*[*_]{0,2}observation[*_]{0,2}[ \t]*:", text, re.IGNORECASE | re.MULTILINE)
    return (text[: match.start()] if match else text).strip()


def parse_reply(text: str) -> Reply:
    """Parse one turn strictly; never raises. Expects a ``clean_reply`` text."""
    labels = [(m.group(1).lower(), m.start(), m.end()) for m in _LABEL.finditer(text)]
    # A hallucinated next "Question:" ends the turn (the model started a new example).
    for i, (name, start, _) in enumerate(labels):
        if name == "question" and i > 0:
            text, labels = text[:start], labels[:i]
            break
    labels = [label for label in labels if label[0] != "question"]

    def content(i: int) -> str:
        end = labels[i + 1][1] if i + 1 < len(labels) else len(text)
        return text[labels[i][2] : end].strip()

    names = [name for name, _, _ in labels]
    thought = next((content(i) for i, n in enumerate(names) if n == "thought"), "")
    if not thought:
        thought = (text[: labels[0][1]] if labels else "").strip()
    n_actions, n_finals = names.count("action"), names.count("final answer")
    if n_actions == 0 and n_finals == 0:
        if not text.strip():
            return Reply(error=f"Invalid format: your reply was empty. {_FORMAT_HINT}")
        return Reply(thought or text.strip(),
                     error=f"Invalid format: your reply has no 'Action:' line and no 'Final Answer:' line. "
                           f"{_FORMAT_HINT}")
    if n_actions and n_finals:
        return Reply(thought, error="Invalid format: you wrote an Action and a Final Answer in the same reply. "
                                    "Write one Action and stop; its Observation comes next. Give the Final "
                                    "Answer only once you have the facts.")
    if n_finals:
        if n_finals > 1:
            return Reply(thought, error="Invalid format: write 'Final Answer:' only once.")
        final = content(names.index("final answer"))
        if not final:
            return Reply(thought, error="Invalid format: the Final Answer is empty. Write the answer after "
                                        "'Final Answer:'.")
        return Reply(thought, final=final)
    if n_actions > 1:
        return Reply(thought, error="Invalid format: write one Action per reply, then stop and wait for its "
                                    "Observation.")
    i = names.index("action")
    action = content(i).splitlines()[0].strip().strip("`'\"").rstrip(".").strip() if content(i) else ""
    if not action:
        return Reply(thought, error="Invalid format: 'Action:' must name a tool. " + _FORMAT_HINT)
    if "(" in action or " " in action:
        return Reply(thought, action=action,
                     error=f"Invalid format: 'Action:' must be only the tool name (for example 'Action: "
                           f"calculator'), and the input goes on the next line as 'Action Input: ...'. You wrote "
                           f"'Action: {action}'.")
    if "action input" not in names or names.index("action input") != i + 1:
        return Reply(thought, action=action,
                     error=f"Invalid format: 'Action: {action}' must be followed by a line 'Action Input: ...' "
                           f"with the tool's input.")
    return Reply(thought, action=action, input=content(i + 1))


# ---------------------------------------------------------------------------------------------------- prompt
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
class _Turn:
    reply: str  # the assistant message
    observation: str
    short: str  # the observation when it must shrink


# ---------------------------------------------------------------------------------------------------- the agent
@dataclass
class Agent:
    retriever: Retriever
    llm: LLM
    settings: Settings = field(default_factory=get_settings)
    tools: Callable[[PassageRegistry], list[Tool]] | None = None  # per-run tool factory; None: default_tools

    def ask(self, question: str) -> AgentResult:
        """Run to the end and return the result."""
        for event in self.run(question):
            if isinstance(event, AgentFinished):
                return event.result
        raise AssertionError("run() always ends with AgentFinished")

    def run(self, question: str) -> Iterator[AgentEvent]:
        """Yield the model's text as it is written (``AgentText``), each ``AgentStep`` as soon as its observation is
        known, then one ``AgentFinished``."""
        started = time.perf_counter()
        s = self.settings
        registry = PassageRegistry()
        tool_list = self.tools(registry) if self.tools else default_tools(self.retriever, s, registry)
        tools = {t.name: t for t in tool_list}
        system = system_prompt(tool_list)
        counter = _Counter(self.llm)
        turns: list[_Turn] = []
        steps: list[AgentStep] = []
        calls: dict[tuple[str, str], int] = {}
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
                fitted = fit_transcript(system, question, turns, want, self.llm.context_window, counter)
                if fitted is None:
                    stopped = MAX_TOKENS
                    break
                messages, budget = fitted
                pieces: list[str] = []
                for piece in self.llm.stream(messages, max_tokens=budget, temperature=s.temperature, stop=STOP):
                    pieces.append(piece)
                    yield AgentText(number, piece)
                raw = "".join(pieces)
            except LLMError as exc:
                stopped = f"llm_error: {exc}"
                break
            except Exception as exc:  # noqa: BLE001 - a backend bug must not take the UI down either
                stopped = f"llm_error: {type(exc).__name__}: {exc}"
                break
            usage = self.llm.last_usage
            written = usage.completion_tokens if usage else counter(raw)
            used += written
            reply_text = clean_reply(raw)
            reply = parse_reply(reply_text)
            if reply.final is not None:
                stopped, final, final_thought = FINAL_ANSWER, reply.final, reply.thought
                break
            if reply.error and written >= budget:
                reply = Reply(reply.thought, reply.action, reply.input, None,
                              f"{reply.error} Your reply was cut off at {budget} tokens: keep the Thought short.")
            output, valid = self._act(reply, tools, calls, number)
            step = AgentStep(
                reply.thought, reply.action or "", reply.input or "", output.text, valid, output.ok,
                tuple(p.n for p in output.passages), reply_text, time.perf_counter() - step_started,
            )
            turns.append(_Turn(reply_text or "(empty reply)", output.text, output.short or _shorten(output.text)))
            steps.append(step)
            yield step
            format_errors = format_errors + 1 if reply.error else 0
            if format_errors >= s.agent_max_format_errors:
                stopped = FORMAT_ERRORS
                break

        fallback = refused = False
        if stopped == FINAL_ANSWER:
            answer, cited = cited_numbers(final, registry.numbers)
            citations = self._citations(registry, answer, cited)
        elif s.agent_fallback and not stopped.startswith("llm_error"):
            # No final answer: the plain grounded answer is worth more to the user than the stop reason alone.
            plain = Answerer(self.retriever, self.llm, s).ask(question)
            answer, citations, refused, fallback = plain.answer, plain.citations, plain.refused, True
            if plain.error:
                answer = _stop_message(f"llm_error: {plain.error}", s.agent_max_steps)
        else:
            answer = _stop_message(stopped, s.agent_max_steps)
            citations = self._citations(registry, question, [])
        yield AgentFinished(
            AgentResult(question, answer, steps, citations, stopped, self.llm.backend, self.llm.model,
                        time.perf_counter() - started, used, final_thought, fallback, refused)
        )

    def _act(self, reply: Reply, tools: dict[str, Tool], calls: dict[tuple[str, str], int],
             number: int) -> tuple[ToolOutput, bool]:
        """Run the reply's action; anything wrong with it becomes an error observation."""
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
        output = tool(reply.input)
        key = (tool.name, " ".join(reply.input.split()).lower())
        if key in calls:
            note = (f"Note: you already ran this in step {calls[key]}; the result is the same. Use it, try "
                    f"something else, or give the Final Answer.\n")
            output = ToolOutput(note + output.text, output.ok, output.passages, output.short)
        else:
            calls[key] = number
        return output, True

    def _citations(self, registry: PassageRegistry, claim_source: str, cited: list[int]) -> list[Citation]:
        """Cited passages in order of citation; if none was cited, every passage retrieved, as consulted."""
        passages = [p for p in (registry.get(n) for n in cited) if p is not None] or registry.passages
        return make_citations(passages, claim_source, set(cited), self.retriever.embedder.embed)


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


# ---------------------------------------------------------------------------------------------------- context
class _Counter:
    """Token counts with the model's tokenizer, cached per text (vLLM counts over HTTP)."""

    def __init__(self, llm: LLM) -> None:
        self.llm = llm
        self.cache: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        if text not in self.cache:
            self.cache[text] = self.llm.count_tokens(text)
        return self.cache[text]

    def message(self, message: Message) -> int:
        return self(message["content"]) + _MESSAGE_OVERHEAD


def fit_transcript(system: str, question: str, turns: list[_Turn], want: int, window: int,
                   count: _Counter) -> tuple[list[Message], int] | None:
    """The chat for the next turn and the tokens the model may write, inside ``window``; None if even the
    barest transcript leaves no room for a turn.

    Shrinks in this order until ``want`` tokens fit: older observations to their short form (oldest first),
    older observations removed, the newest observation cut; then accepts any room of at least MIN_STEP_TOKENS.
    """
    observations = [t.observation for t in turns]

    def build() -> list[Message]:
        messages: list[Message] = [{"role": "system", "content": system},
                                   {"role": "user", "content": f"Question: {question}"}]
        for turn, observation in zip(turns, observations, strict=True):
            messages.append({"role": "assistant", "content": turn.reply})
            messages.append({"role": "user", "content": f"Observation: {observation}"})
        return messages

    limit = window - _PROMPT_MARGIN

    def room() -> int:
        return limit - sum(count.message(m) for m in build())

    if room() >= want:
        return build(), want
    for shrink in (lambda i: turns[i].short, lambda i: _DROPPED):
        for i in range(len(turns) - 1):
            observations[i] = shrink(i)
            if room() >= want:
                return build(), want
    if turns:
        last = turns[-1].observation
        spare = room() + count(f"Observation: {last}")  # room without the newest observation's text
        words = last.split(" ")
        low, high = 0, len(words)
        while low < high:  # the longest prefix of the newest observation that leaves ``want`` tokens
            middle = (low + high + 1) // 2
            if spare - count("Observation: " + " ".join(words[:middle]) + " … (cut)") >= want:
                low = middle
            else:
                high = middle - 1
        observations[-1] = " ".join(words[:low]) + " … (cut to fit the context window)" if low else _DROPPED
    left = room()
    if left >= want:
        return build(), want
    if left >= MIN_STEP_TOKENS:
        return build(), left
    return None


# ---------------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    from rag.cli import add_backend_option, open_index, parser, print_json, say, settings_with
    from rag.llm import get_llm

    p = parser("python -m rag.agent", "Answer a question with tools (search, calculator, python), citing passages.")
    p.add_argument("question")
    add_backend_option(p)
    p.add_argument("--max-steps", type=int, metavar="N", help="model turns allowed (default: $RAG_AGENT_MAX_STEPS "
                                                               "or 6)")
    args = p.parse_args(argv)
    if args.max_steps is not None and not 1 <= args.max_steps <= 50:
        p.error("--max-steps must be between 1 and 50")
    settings = settings_with(llm=args.backend, agent_max_steps=args.max_steps)
    store = open_index(args)

    agent = Agent(Retriever(store, settings=settings), get_llm(settings), settings)
    result = None
    shown = 0
    for event in agent.run(args.question):
        if isinstance(event, AgentStep):
            shown += 1
            if not args.json:
                say(format_step(shown, event))
        elif isinstance(event, AgentFinished):
            result = event.result
    assert result is not None
    if args.json:
        print_json(result.to_json())
    else:
        if result.thought:
            say(f"Thought: {result.thought}")
        if not result.answered:
            say(f"stopped: {result.stopped_reason}")
        print(result.answer)
        if result.citations:
            say("sources:" if any(c.cited for c in result.citations) else "passages consulted:")
        for c in result.citations:
            say(f"  [{c.n}] {c.where}: {c.support}")
        say(f"({len(result.steps)} steps, {result.tokens} tokens written, {result.seconds:.1f} s, "
            f"{result.backend}: {result.model})")
    return 1 if result.stopped_reason.startswith("llm_error") else 0


def format_step(number: int, step: AgentStep, observation_chars: int = 600) -> str:
    """A step for people: its parts on labelled lines, a long observation shortened."""
    observation = step.observation
    if len(observation) > observation_chars:
        observation = observation[:observation_chars].rstrip() + " …"
    lines = [f"--- step {number}" + ("" if step.valid else " (rejected)")]
    if not step.valid:  # show what the model wrote, as it wrote it
        lines.append(_labelled("Model wrote", step.raw or "(nothing)"))
    else:
        if step.thought:
            lines.append(_labelled("Thought", step.thought))
        lines.append(f"Action: {step.action}")
        lines.append(_labelled("Action Input", step.input))
    lines.append(_labelled("Observation", observation))
    return "\n".join(lines)


def _labelled(label: str, text: str) -> str:
    """``label: text`` on one line, or the label and the text indented below it when it has several lines."""
    if "\n" not in text:
        return f"{label}: {text}"
    return f"{label}:\n" + textwrap.indent(text, "    ")


if __name__ == "__main__":
    sys.exit(main())
