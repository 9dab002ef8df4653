"""``python -m rag.agent "QUESTION" [--json] [--backend NAME] [--index DIR] [--max-steps N]``: agent mode in a
terminal. Steps go to stderr as they happen; the answer to stdout (or one JSON document with --json)."""

from __future__ import annotations

import textwrap

from rag.agent.events import AgentFinished, AgentStep
from rag.cli import add_backend_option, add_history_option, history_from, parser, print_json, run, say, settings_with
from rag.service import Service


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m rag.agent", "Answer a question with tools (search, calculator, python), citing passages.")
    p.add_argument("question")
    add_backend_option(p)
    add_history_option(p)
    p.add_argument("--max-steps", type=int, metavar="N", help="model turns allowed (default: $RAG_AGENT_MAX_STEPS "
                                                               "or 6)")
    args = p.parse_args(argv)
    history = history_from(p, args)
    settings = settings_with(p, llm=args.backend, agent_max_steps=args.max_steps)
    service = Service.for_command(args, settings, read_only=True)

    result = None
    shown = 0
    for event in service.run_agent(args.question, history):
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
        if result.grounding is not None and not result.grounding.verified:
            say(f"not found in your sources: {', '.join(result.grounding.missing)}")
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
    run(main)
