"""End-to-end answers from each embedded model on held-out questions, in one run: how often right, wrong, refused.

    .venv/bin/python bench/answer.py [DATASET_DIR] [--half b] [-n 80] [--outside 40] [--models qwen2.5-coder-1.5b,smollm2-135m]

The set is split in two by article (``scripts/split_dataset.py``: alternating in name order). Prompts were tuned on
half A; the figures to quote come from half B (``--half b``, the default): its articles are indexed, ``-n`` of its
questions (spread evenly) are asked, and ``--outside`` questions about the other half's articles, which are not
indexed, check that questions the documents cannot answer are refused. Every question goes through
``Answerer.run`` with the shipped settings (greedy), as ``python -m rag.ask`` would answer it.

Scoring rule, per answerable question (SQuAD's normalisation: lower case, punctuation and a/an/the removed,
whitespace collapsed):
- refused by retrieval: no evidence, the model was not asked;
- refused by the model: it answered "The documents do not contain the answer.";
- correct: the normalised answer contains one of the normalised reference answers (as whole words);
- wrong: any other answer (it answered, without the reference).
"flagged" counts answers the checks mark unverified (a name or number in no cited passage: ``rag.answer.grounding``;
an answer that does not answer the question from its passages: ``rag.answer.support``; a model unsure of a word
of its answer: ``rag.answer.confidence``), split into flagged wrong and flagged correct ones; with
``RAG_UNVERIFIED_ANSWERS=withhold`` exactly the flagged answers are withheld (the run uses "show", the line under the
table gives what withholding makes of it). "F1" is SQuAD's token F1 against the best reference, refusals 0;
"cites source" is the share of answers citing a passage of the question's article. Per-question records go to test-artifacts/bench-answer-<model>.jsonl.

``--server URL --server-model NAME`` adds a model served by an OpenAI-compatible server (vLLM: ``scripts/vllm.sh``,
e.g. a 7B model on a GPU machine) to the same table, as "NAME (server)", asked through the same ``Answerer``
(``RAG_LLM_API_KEY`` is sent only when URL is ``RAG_LLM_URL``, as in the app); ``--models ''`` measures it alone.

``--cross-field N``: no question set from another field ships in a PyPI package, so the set's own articles stand
in: the science and technology articles (SCIENCE below) are indexed alone and N questions about the history,
society and sport articles are asked of the default model; the share refused (by retrieval or by the model) is
what "documents from another field than the questions" costs here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import string
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from split_dataset import split  # noqa: E402

from rag.answer.answerer import Answer, Answerer, Delta, Finished  # noqa: E402
from rag.eval import ingest_dataset  # noqa: E402
from rag.index.store import Store, open_store  # noqa: E402
from rag.llm import LLM, EmbeddedLLM, get_llm  # noqa: E402
from rag.llm.models import DEFAULT_EMBEDDED_MODEL, EMBEDDED_MODELS  # noqa: E402
from rag.retrieval.evaluate import Question, load_questions  # noqa: E402
from rag.retrieval.retriever import Retriever  # noqa: E402
from rag.settings import Settings  # noqa: E402

DEFAULT_SET = ROOT.parent / "shared" / "eval" / "xquad-dev"
VERDICTS = ("correct", "wrong", "refused_model", "refused_retrieval")
SCIENCE = ["Amazon_rainforest.md", "Apollo_program.md", "Computational_complexity_theory.md", "Ctenophora.md",
           "Geology.md", "Oxygen.md", "Packet_switching.md", "Steam_engine.md"]


def normalise(text: str) -> str:
    text = "".join(" " if c in string.punctuation else c for c in text.lower())
    return " ".join(w for w in text.split() if w not in {"a", "an", "the"})


def verdict(answer: Answer, references: list[str]) -> str:
    if answer.refused_by == "retrieval":
        return "refused_retrieval"
    if answer.refused_by == "model":
        return "refused_model"
    said = f" {normalise(answer.answer)} "
    return "correct" if any(f" {normalise(r)} " in said for r in references if normalise(r)) else "wrong"


def f1(answer: str, references: list[str]) -> float:
    """SQuAD's token F1 of an answer (its ``[n]`` markers dropped) against its best reference."""
    said = normalise(re.sub(r"\[\d+\]", " ", answer)).split()
    best = 0.0
    for reference in references:
        ref = normalise(reference).split()
        common = sum((Counter(said) & Counter(ref)).values())
        if common:
            best = max(best, 2 * common / (len(said) + len(ref)))
    return best


@dataclass
class Tally:
    model: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    flagged: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    cites_source: int = 0
    failed: int = 0
    f1: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    checks: list[float] = field(default_factory=list)  # asking the model again after the answer (its calibrator)
    prompt_tokens: list[int] = field(default_factory=list)
    outside: int = 0
    outside_refused: dict[str, int] = field(default_factory=lambda: {"retrieval": 0, "model": 0})

    @property
    def asked(self) -> int:
        return sum(self.counts.values())


def ask(answerer: Answerer, question: str) -> tuple[Answer, float | None]:
    started, first, answer = time.perf_counter(), None, None
    for event in answerer.run(question):
        if isinstance(event, Delta) and first is None:
            first = time.perf_counter() - started
        elif isinstance(event, Finished):
            answer = event.answer
    assert answer is not None
    return answer, first


def model_settings(base: Settings, name: str, server: str | None) -> Settings:
    """The shipped settings, on embedded model ``name`` or (``server`` set) on the model ``name`` that server serves."""
    backend = "openai" if server else "embedded"
    return base.model_copy(update={"llm": backend, "llm_url": server or base.llm_url,
                                   "llm_api_key": base.api_key_for(server or base.llm_url),
                                   Settings.chat_model_field(backend): name})


def run_model(name: str, store: Store, base: Settings, questions: list[Question], outside: list[Question],
              log: Path, server: str | None = None) -> Tally:
    settings = model_settings(base, name, server)
    llm: LLM = get_llm(settings) if server else EmbeddedLLM(model_name=name, n_threads=settings.llm_threads)
    answerer = Answerer(Retriever(store, settings=settings), llm, settings)
    ask(answerer, questions[0].question)  # warm-up: the model loads and the fixed prompt prefix is evaluated
    tally = Tally(f"{llm.model} (server)" if server else llm.model)
    with log.open("w") as out:
        for q in questions:
            answer, first = ask(answerer, q.question)
            if answer.error:
                tally.failed += 1
                continue
            v = verdict(answer, q.answers)
            tally.counts[v] += 1
            tally.flagged[v] += not answer.verified
            tally.cites_source += any(c.cited and c.source == q.source for c in answer.citations)
            tally.f1.append(f1(answer.answer, q.answers) if v in ("correct", "wrong") else 0.0)
            if v not in ("refused_retrieval",):
                tally.seconds.append(answer.seconds)
                tally.ttft.append(first or answer.seconds)
                tally.checks += [answer.second_seconds] if answer.second_seconds else []
                tally.prompt_tokens.append(answer.usage.prompt_tokens if answer.usage else 0)
            out.write(json.dumps({"id": q.id, "question": q.question, "references": q.answers, "verdict": v,
                                  "answer": answer.answer, "verified": answer.verified,
                                  "unverified": list(answer.grounding.missing) if answer.grounding else [],
                                  "checks": answer.checks, "confidence": answer.to_json()["confidence"],
                                  "cited": [c.source for c in answer.citations if c.cited],
                                  "seconds": round(answer.seconds, 2)}) + "\n")
            out.flush()
            print(f"  {name} {tally.asked}/{len(questions)} {v}: {answer.answer[:80]!r}", file=sys.stderr)
        for q in outside:
            answer, _ = ask(answerer, q.question)
            tally.outside += 1
            if answer.refused_by:
                tally.outside_refused[answer.refused_by] += 1
            out.write(json.dumps({"id": q.id, "question": q.question, "outside": True, "answer": answer.answer,
                                  "refused_by": answer.refused_by}) + "\n")
    return tally


def cross_field(dataset: Path, model: str, base: Settings, n: int, tmp: Path) -> str:
    """Index the science articles alone, ask ``n`` questions about the others (history, society, sport)."""
    docs = tmp / "science" / "docs"
    docs.mkdir(parents=True)
    for name in SCIENCE:
        (docs / name).write_bytes((dataset / "docs" / name).read_bytes())
    others = [q for q in load_questions(dataset) if q.source not in SCIENCE]
    others = others[:: max(len(others) // n, 1)][:n]
    store = open_store(tmp / "science" / "index")
    ingest_dataset(tmp / "science", store)
    settings = base.model_copy(update={"embedded_model": model})
    answerer = Answerer(Retriever(store, settings=settings), EmbeddedLLM(model_name=model), settings)
    refused = {"retrieval": 0, "model": 0}
    answered = []
    for q in others:
        answer, _ = ask(answerer, q.question)
        if answer.refused_by:
            refused[answer.refused_by] += 1
        else:
            answered.append(f"{q.question} -> {answer.answer[:60]!r} (verified: {answer.verified})")
    store.close()
    return (f"cross-field: {len(SCIENCE)} science/technology articles indexed, {len(others)} questions about the "
            f"other {24 - len(SCIENCE)} articles (history, society, sport) asked of {model}: "
            f"{share(sum(refused.values()), len(others))} refused ({refused['retrieval']} by retrieval, "
            f"{refused['model']} by the model)" + "".join(f"\n  answered: {a}" for a in answered))


def share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "-"


def p50(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"


def print_table(tallies: list[Tally], dataset: str, half: str, load: float) -> None:
    print(f"{dataset}, half {half.upper()} ({'held out' if half == 'b' else 'tuning half'}), greedy, {os.cpu_count()} cores, 1-min load average "
          f"{load:.1f} at start (other work running slows the timings, not the verdicts)")
    print("| model | questions | correct | wrong | refused by model | refused by retrieval | flagged unverified "
          "(wrong / correct) | F1 | cites the source | out-of-corpus refused | first token p50 s | answer p50 s | "
          "checks after it p50 s | prompt tokens |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for t in tallies:
        n = t.asked
        outside = sum(t.outside_refused.values())
        print(f"| {t.model} | {n} | {share(t.counts['correct'], n)} | {share(t.counts['wrong'], n)} | "
              f"{share(t.counts['refused_model'], n)} | {share(t.counts['refused_retrieval'], n)} | "
              f"{t.flagged['wrong']} of {t.counts['wrong']} / {t.flagged['correct']} of {t.counts['correct']} | "
              f"{statistics.mean(t.f1) if t.f1 else 0:.2f} | {share(t.cites_source, n)} | {share(outside, t.outside)} "
              f"({t.outside_refused['retrieval']} by retrieval, {t.outside_refused['model']} by the model) | {p50(t.ttft)} | {p50(t.seconds)} | "
              f"{p50(t.checks)} | {statistics.mean(t.prompt_tokens) if t.prompt_tokens else 0:.0f} |"
              + (f" ({t.failed} failed)" if t.failed else ""))
    for t in tallies:
        n, c, w = t.asked, t.counts, t.flagged
        print(f"{t.model} with RAG_UNVERIFIED_ANSWERS=withhold: correct {share(c['correct'] - w['correct'], n)}, "
              f"wrong {share(c['wrong'] - w['wrong'], n)}, withheld {share(w['correct'] + w['wrong'], n)}, "
              f"refused {share(c['refused_model'] + c['refused_retrieval'], n)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_SET)
    p.add_argument("--half", choices=["a", "b"], default="b", help="a: the tuning half; b: held out (default)")
    p.add_argument("-n", type=int, default=80, help="answerable questions per model (spread over the half)")
    p.add_argument("--outside", type=int, default=40, help="questions about the other half's articles")
    p.add_argument("--cross-field", type=int, default=0, metavar="N",
                   help="also: science articles indexed, N questions about the others (default model)")
    p.add_argument("--models", default=f"{DEFAULT_EMBEDDED_MODEL},smollm2-135m",
                   help=f"embedded models, comma-separated, of: {', '.join(EMBEDDED_MODELS)} ('' for none)")
    p.add_argument("--server", metavar="URL",
                   help="also a model on an OpenAI-compatible server (vLLM), e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--server-model", metavar="NAME", help="the model name that server serves (with --server)")
    args = p.parse_args()
    if bool(args.server) != bool(args.server_model):
        p.error("--server and --server-model go together")
    load = os.getloadavg()[0]
    base = Settings().model_copy(update={"temperature": 0.0, "llm": "embedded", "unverified_answers": "show"})
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        halves = {"a": Path(tmp) / "half-a", "b": Path(tmp) / "half-b"}
        split(args.dataset, halves["a"], halves["b"])
        inside, other = halves[args.half], halves["b" if args.half == "a" else "a"]
        questions = load_questions(inside)
        questions = questions[:: max(len(questions) // max(args.n, 1), 1)][: args.n]
        outside = load_questions(other)
        outside = outside[:: max(len(outside) // args.outside, 1)][: args.outside] if args.outside else []
        store = open_store(Path(tmp) / "index")
        ingest_dataset(inside, store)
        runs = [(name, None) for name in args.models.split(",") if name]
        runs += [(args.server_model, args.server)] if args.server else []
        # a served model's log and row are marked as such: vLLM serves SmolLM2 as "smollm2-135m" too
        tallies = [run_model(name, store, base, questions, outside, artifacts /
                             f"bench-answer-{'server-' if server else ''}{name.replace('/', '_')}.jsonl", server)
                   for name, server in runs] if args.n else []
        store.close()
        crossed = cross_field(args.dataset, DEFAULT_EMBEDDED_MODEL, base, args.cross_field, Path(tmp)) \
            if args.cross_field else ""
    if tallies:
        print_table(tallies, args.dataset.name, args.half, load)
    if crossed:
        print(crossed)


if __name__ == "__main__":
    main()
