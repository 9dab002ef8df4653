"""Agent mode on lookup-and-arithmetic questions: does the loop finish with its own answer, and is it right?

    .venv/bin/python bench/agent.py [DATASET_DIR] [--models qwen2.5-coder-1.5b,smollm2-135m] [--max-steps 6]

The questions are in ``bench/agent_questions.jsonl``, each with its expected number and the facts it rests on: two
facts of one xquad-dev article must be found and combined (a difference of years, a sum). All the set's articles
are indexed; each question runs through ``Agent.run`` with the shipped settings, as ``python -m rag.agent`` runs it.

- finished: the run ended with the model's own Final Answer (not the step limit, nor the plain-answer fallback);
- right: the expected number occurs in the final answer (as a number, so "129" or "129 years");
- verified: the groundedness check found every name and number of the answer in a cited passage or tool result.
The traces go to test-artifacts/bench-agent-<model>.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.agent.loop import Agent  # noqa: E402
from rag.answer.grounding import numbers_in  # noqa: E402
from rag.eval import ingest_dataset  # noqa: E402
from rag.index.store import open_store  # noqa: E402
from rag.llm import EmbeddedLLM  # noqa: E402
from rag.llm.models import DEFAULT_EMBEDDED_MODEL  # noqa: E402
from rag.retrieval.evaluate import read_jsonl  # noqa: E402
from rag.retrieval.retriever import Retriever  # noqa: E402
from rag.settings import Settings  # noqa: E402

DEFAULT_SET = ROOT.parent / "shared" / "eval" / "xquad-dev"
QUESTIONS = Path(__file__).resolve().parent / "agent_questions.jsonl"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_SET)
    p.add_argument("--models", default=f"{DEFAULT_EMBEDDED_MODEL},smollm2-135m")
    p.add_argument("--max-steps", type=int, default=None, help="default: RAG_AGENT_MAX_STEPS")
    args = p.parse_args()
    load = os.getloadavg()[0]
    rows = read_jsonl(QUESTIONS)
    base = Settings().model_copy(update={"temperature": 0.0, "llm": "embedded"})
    if args.max_steps:
        base = base.model_copy(update={"agent_max_steps": args.max_steps})
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "index")
        ingest_dataset(args.dataset, store)
        for name in args.models.split(","):
            settings = base.model_copy(update={"embedded_model": name})
            llm = EmbeddedLLM(model_name=name, n_threads=settings.llm_threads)
            agent = Agent(Retriever(store, settings=settings), llm, settings)
            finished = right = verified = 0
            seconds, steps = [], []
            with (artifacts / f"bench-agent-{name}.jsonl").open("w") as log:
                for row in rows:
                    result = agent.ask(row["question"])
                    own = result.stopped_reason == "final_answer"
                    correct = own and any(value == row["answer"] for _, value in numbers_in(result.answer))
                    finished += own
                    right += correct
                    verified += own and bool(result.to_json()["verified"])
                    seconds.append(result.seconds)
                    steps.append(len(result.steps))
                    print(f"  {name}: {result.stopped_reason}, {'right' if correct else 'not right'}: "
                          f"{result.answer[:100]!r}", file=sys.stderr)
                    log.write(json.dumps({**row, "result": result.to_json(), "right": correct}) + "\n")
            table.append((llm.model, len(rows), finished, right, verified, statistics.mean(steps),
                          statistics.median(seconds)))
        store.close()
    print(f"agent mode, {len(rows)} lookup-and-arithmetic questions over {args.dataset.name} (all articles indexed), "
          f"greedy, at most {base.agent_max_steps} steps; {os.cpu_count()} cores, 1-min load average {load:.1f} at start")
    print("| model | questions | finished by the loop | right | verified | steps (mean) | seconds p50 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for model, n, finished, right, verified, mean_steps, p50 in table:
        print(f"| {model} | {n} | {finished} | {right} | {verified} | {mean_steps:.1f} | {p50:.0f} |")


if __name__ == "__main__":
    main()
