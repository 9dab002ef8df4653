"""End-to-end answers with every top-k passage vs only those the relevance cut keeps, in one run.

    .venv/bin/python bench/answer.py [DATASET_DIR] [-n 40] [--backend embedded|openai]

For the same questions (spread evenly over the set) and the same model, greedy: how many passages reach the
model, prompt tokens, time to the first streamed token, time to the whole answer, and how often the answer
contains one of the question's reference answers (a rough check that the cut costs the model no facts).
Questions refused for lack of evidence never reach the model and are left out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.answer.answerer import Answerer, Delta, Finished, Retrieved  # noqa: E402
from rag.eval import ingest_dataset  # noqa: E402
from rag.index.store import Store, open_store  # noqa: E402
from rag.llm import LLM, get_llm  # noqa: E402
from rag.retrieval.evaluate import Question, load_questions  # noqa: E402
from rag.retrieval.retriever import Retrieval, Retriever  # noqa: E402
from rag.settings import Settings  # noqa: E402

DEFAULT_SET = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "xquad-dev"


def run(store: Store, llm: LLM, settings: Settings, questions: list[Question]) -> dict[str, float]:
    answerer = Answerer(Retriever(store, settings=settings), llm, settings)
    passages: list[int] = []
    prompt: list[int] = []
    first: list[float] = []
    total: list[float] = []
    correct = asked = given = failed = 0
    for q in questions:
        started = time.perf_counter()
        ttft = None
        for event in answerer.run(q.question):
            if isinstance(event, Retrieved):
                if event.refused:
                    break
                relevant = Retrieval(event.query, event.hits, event.evidence).relevant(settings.min_relative_score)
                given = len(answerer._messages(q.question, [], relevant)[1])  # after trimming to the context
            if isinstance(event, Delta) and ttft is None:
                ttft = time.perf_counter() - started
            if isinstance(event, Finished):
                answer = event.answer
                if answer.error:
                    failed += 1
                    continue
                asked += 1
                passages.append(given)
                prompt.append(answer.usage.prompt_tokens if answer.usage else 0)
                first.append(ttft or 0.0)
                total.append(time.perf_counter() - started)
                correct += any(a.lower() in answer.answer.lower() for a in q.answers)
    if not asked:
        raise SystemExit(f"no question was answered ({failed} failed): is the model working?")
    return {"asked": asked, "failed": failed, "passages": statistics.mean(passages), "prompt": statistics.mean(prompt),
            "ttft": statistics.median(first), "total": statistics.median(total), "correct": correct / asked}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_SET)
    p.add_argument("-n", type=int, default=40, help="questions to ask (spread over the set)")
    p.add_argument("--backend", choices=["embedded", "openai"], default=None)
    args = p.parse_args()
    base = Settings()
    shipped = base.model_copy(update={"temperature": 0.0, "llm": args.backend or base.llm})
    questions = load_questions(args.dataset)
    questions = questions[:: max(len(questions) // args.n, 1)][: args.n]
    llm = get_llm(shipped)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "index")
        ingest_dataset(args.dataset, store)
        Answerer(Retriever(store, settings=shipped), llm, shipped).ask(questions[0].question)  # warm-up: model load
        rows = [
            (f"all top-{shipped.top_k} passages", run(store, llm, shipped.model_copy(update={"min_relative_score": 0.0}),
                                                     questions)),
            (f"shipped: score >= {shipped.min_relative_score} x best", run(store, llm, shipped, questions)),
        ]
        store.close()
    failed = sum(r["failed"] for _, r in rows)
    print(f"{args.dataset.name}: {rows[0][1]['asked']} questions answered by {llm.backend} ({llm.model}), greedy"
          + (f"; {failed} answers failed and are left out" if failed else ""))
    print("| passages given to the model | passages | prompt tokens | first token p50 s | answer p50 s | "
          "answer contains the reference |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in rows:
        print(f"| {label} | {r['passages']:.2f} | {r['prompt']:.0f} | {r['ttft']:.2f} | {r['total']:.2f} | "
              f"{r['correct']:.3f} |")


if __name__ == "__main__":
    main()
