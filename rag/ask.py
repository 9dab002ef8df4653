"""``python -m rag.ask "QUESTION" [--json] [--backend embedded|openai] [--history FILE] [-k N]``.

The answer streams to stdout as it is written (or, with --json, one JSON document when done); sources and
progress go to stderr. Exit status 0 when answered or refused, 1 when the model failed, 2 on bad usage.
"""

from __future__ import annotations

import sys

from rag.answer.answerer import Delta, Finished, Retrieved
from rag.cli import add_backend_option, add_history_option, add_k_option, history_from, parser, print_json, run, say
from rag.cli import settings_with
from rag.service import Service


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m rag.ask", "Answer a question from the indexed documents, with citations.")
    p.add_argument("question")
    add_backend_option(p)
    add_history_option(p)
    add_k_option(p, "passages to retrieve")
    args = p.parse_args(argv)
    history = history_from(p, args)
    settings = settings_with(p, llm=args.backend, top_k=args.k)
    service = Service.for_command(args, settings, read_only=True)

    answer = None
    for event in service.ask(args.question, history):
        if isinstance(event, Retrieved):
            if event.query != args.question:
                say(f"searching for: {event.query}")
        elif isinstance(event, Delta) and not args.json:
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, Finished):
            answer = event.answer
    assert answer is not None
    if args.json:
        print_json(answer.to_json())
    else:
        print()
        if answer.grounding is not None and answer.grounding.missing:
            say(f"not found in your sources: {', '.join(answer.grounding.missing)}")
        for reason in answer.checks:
            say(f"check this answer: {reason}")
        if answer.refused_by == "check":
            say(f"withheld (RAG_UNVERIFIED_ANSWERS=withhold): {answer.answer}")
        heading = "closest passages:" if answer.refused else "sources:"
        say(heading)
        for c in answer.citations:
            mark = "" if c.cited or answer.refused else " (consulted)"
            say(f"  [{c.n}] {c.where}{mark}: {c.support}")
    if answer.error:
        say(f"error: {answer.error}")
        return 1
    return 0


if __name__ == "__main__":
    run(main)
