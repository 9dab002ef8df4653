"""Reading a reply back (teacher forcing, ``LLM.reply_logprobs``): one batch against one token at a time.

    .venv/bin/python bench/read_back.py              # default model, 5 runs of each question
    .venv/bin/python bench/read_back.py --runs 3 --model smollm2-135m

What the answer step pays for ``question_fit``: after the answer is written, the question is read as the model's
reply to the answer prompt with its closing question replaced by the answer (``asking_back``). The prompt is the app's
own (bench/llm.py's passages about Paris); its passages stay in the KV cache from one reading to the next, as they do
after the answer and its samples, so each timed reading evaluates the new closing lines and the question.

- "one batch": ``EmbeddedLLM.reply_logprobs`` as shipped (the question's tokens decoded together, logits kept for each);
- "one token at a time": the reference, the way it was done until 2026-12-08 (a llama.cpp logits processor forcing
  each token through ``create_completion`` and noting its log-probability first).

Both run in the same process, alternately, so both meet the same machine load. Printed: the median time per
question, and the largest difference between the two ways' log-probabilities (batched kernels round differently).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from llm import rag_messages  # noqa: E402

from rag.answer.answerer import asking_back  # noqa: E402
from rag.llm import EmbeddedLLM  # noqa: E402
from rag.llm.models import DEFAULT_EMBEDDED_MODEL, EMBEDDED_MODELS  # noqa: E402

ANSWER = "Gustave Eiffel's company designed and built it from 1887 to 1889 [1]."
QUESTIONS = [
    "Who designed the Eiffel Tower?",
    "Who designed the Eiffel Tower, and when was it built?",
    "Which engineer's company designed and built the wrought-iron lattice tower on the Champ de Mars for the "
    "centrepiece of the 1889 World's Fair, and in which years was it built?",
]


class Forced:
    """The reference: a logits processor that makes the model write ``tokens`` whatever it would choose, noting the
    log-probability it gave each first (one token evaluated per step)."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens
        self.logprobs: list[float] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np

        token = self.tokens[min(len(self.logprobs), len(self.tokens) - 1)]
        if len(self.logprobs) < len(self.tokens):
            top = float(scores.max())
            self.logprobs.append(float(scores[token]) - top - math.log(float(np.exp(scores - top).sum())))
        forced = np.full_like(scores, -np.inf)
        forced[token] = 0.0
        return forced


def one_token_at_a_time(llm: EmbeddedLLM, messages: list[dict[str, str]], reply: str) -> list[float]:
    from llama_cpp import LogitsProcessorList

    loaded = llm._model()
    llama = loaded.llama
    prompt = loaded.render(messages)[1]
    forced = Forced(llama.tokenize(reply.encode("utf-8"), add_bos=False, special=False))
    with loaded.lock:
        for _ in llama.create_completion(prompt=prompt, max_tokens=len(forced.tokens), temperature=0.0, stream=True,
                                         logits_processor=LogitsProcessorList([forced])):
            pass
    return forced.logprobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default=DEFAULT_EMBEDDED_MODEL, choices=list(EMBEDDED_MODELS))
    args = parser.parse_args()
    llm = EmbeddedLLM(model_name=args.model)
    messages = asking_back(rag_messages(0, reuse_head=True), ANSWER)
    llm.reply_logprobs(messages, QUESTIONS[0])  # load the model and fill the KV cache with the passages: not timed
    print(f"{llm.model}, {args.runs} runs each, median per question\n")
    print("| question tokens | one batch | one token at a time | faster | largest log-probability difference |")
    print("|---:|---:|---:|---:|---:|")
    for question in QUESTIONS:
        times: dict[str, list[float]] = {"batch": [], "single": []}
        diff = 0.0
        for _ in range(args.runs):
            started = time.perf_counter()
            batch = llm.reply_logprobs(messages, question) or []
            times["batch"].append(time.perf_counter() - started)
            started = time.perf_counter()
            single = one_token_at_a_time(llm, messages, question)
            times["single"].append(time.perf_counter() - started)
            diff = max([diff, *(abs(a - b) for a, b in zip(batch, single, strict=True))])
        b, s = statistics.median(times["batch"]), statistics.median(times["single"])
        print(f"| {llm.count_tokens(question)} | {b * 1000:.0f} ms | {s * 1000:.0f} ms | {s / b:.1f}x | {diff:.3f} |")


if __name__ == "__main__":
    main()
