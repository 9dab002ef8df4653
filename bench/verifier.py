"""Answers labelled right or wrong with their features: what the answer calibrator is fitted on and judged by.

    .venv/bin/python bench/verifier.py collect --half a --minutes 15 -n 320     # tuning half: fitting data
    .venv/bin/python bench/verifier.py collect --half b --minutes 10 -n 60      # held out: the 60 of bench/answer.py -n 60 first
    .venv/bin/python bench/verifier.py collect --set second                     # questions no fitting saw (tests/data/verifier-set)
    .venv/bin/python bench/verifier.py backfill --half a                        # passages of records that lack them
    .venv/bin/python bench/verifier.py sample --half a --minutes 40             # sampled replies of records that lack them
    .venv/bin/python bench/verifier.py fit                                      # -> rag/answer/calibrators/<model>.json
    .venv/bin/python bench/verifier.py evaluate                                 # half B and the second set only
    .venv/bin/python bench/verifier.py collect --half a --model smollm2-135m    # ... and so on for another model

``collect`` runs the default model (``qwen2.5-coder-1.5b``) with the shipped settings (greedy, ``show``) through
``Answerer.run``, as ``python -m rag.ask`` would answer, with ``ask_twice`` and ``sample`` on so every record also
has the second decoding's ``agreement`` and the sampled replies' ``consistency`` (and what they cost); it writes one
record per question to ``bench/verifier-records/verifier-<half>.jsonl`` (features, the old checks' verdict, the
label; kept in the repository, since labelled answers cost model time and a new machine starts empty), appending
and skipping questions already there, so fitting and evaluating never re-run the model. Half A questions are taken spread over
its articles (every fifth first); half B's first 60 are exactly ``bench/answer.py -n 60``'s, then more, spread.

Labels (``label``): refusals are not answers and get none. An answer is **right** when bench/answer.py's
``verdict`` says "correct" (the normalised answer contains a normalised reference as whole words), or when it is
right in substance: the content words of answer and best reference (``rag.index.keyword.tokenize``: lower case,
stop words out, Snowball stems, so "counties"/"county" match) have a token F1 of at least 0.5 **and** every number
of that reference is in the answer ("The Labor Party" for "Australian Labor Party", "locomotion" for "method of
locomotion"; not "1960 Olympics" for "1964 Olympics"); or everything the answer says, numbers compared by value, is
part of a reference ("4" for "four", "760 mm" for "760 mm (2 ft 6 in) narrow gauge lines"; added 2026-12-07, when it
moved three of half B's labels and none of half A's or the second set's). A reference the data set cut off inside a
parenthesis is read without it (one of half B's: "7,000,000 square kilometres (2,70"). Any other answer is
**wrong**. ``fit`` and ``evaluate`` label every record by the rule as it is now (``relabel``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

from answer import DEFAULT_SET, f1, verdict  # noqa: E402
from split_dataset import split  # noqa: E402

from rag.answer.answerer import Answer, Answerer, Finished  # noqa: E402
from rag.answer.context import Passage  # noqa: E402
from rag.answer.features import SAMPLE_SEEDS, what_it_says  # noqa: E402
from rag.answer.grounding import number_values  # noqa: E402
from rag.index.keyword import tokenize  # noqa: E402
from rag.llm import Message  # noqa: E402
from rag.retrieval.evaluate import Question, load_questions  # noqa: E402

ARTIFACTS = ROOT / "bench" / "verifier-records"
SECOND_SET = ROOT / "tests" / "data" / "verifier-set"
SAMPLE = ROOT / "data" / "sample"
MODEL = "qwen2.5-coder-1.5b"  # the default model; --model another embedded one (SmolLM2)


def records(set_name: str, model: str = MODEL) -> Path:
    """Where a model's labelled answers to one set (a, b, second) are kept: the default model's keep the names
    they always had."""
    prefix = "verifier" if model == MODEL else f"verifier-{model}"
    return ARTIFACTS / f"{prefix}-{set_name}.jsonl"


def substance_f1(answer: str, reference: str) -> float:
    said, ref = tokenize(answer), tokenize(reference)
    common = sum((Counter(said) & Counter(ref)).values())
    return 2 * common / (len(said) + len(ref)) if common else 0.0


def uncut(reference: str) -> str:
    """A reference the data set cut off inside a parenthesis ("7,000,000 square kilometres (2,70") without the
    unclosed part, whose last number is a fragment."""
    opened = reference.rfind("(")
    return reference[:opened].strip() if opened > reference.rfind(")") else reference


def right_in_substance(answer: str, references: list[str]) -> bool:
    """Stemmed content-word F1 >= 0.5 against some reference whose numbers the answer all states; or all the answer
    says (``what_it_says``: content words by stem, numbers by value) is part of some reference ("4" for "four",
    "Amazonia" for "also known in English as Amazonia or the Amazon Jungle"). A reference cut off inside a
    parenthesis is read without it (``uncut``)."""
    numbers, says = number_values(answer), what_it_says(answer)
    return any((substance_f1(answer, r) >= 0.5 and number_values(r) <= numbers) or (says and says <= what_it_says(r))
               for r in map(uncut, references))


def right_or_wrong(verdict: str, answer: str, references: list[str]) -> str:
    """The label of an answer (not a refusal): right when the verdict says correct or it is right in substance."""
    return "right" if verdict == "correct" or right_in_substance(answer, references) else "wrong"


def relabel(row: dict) -> dict:
    """A record's label by the rule as it is now (refusals keep none): records written under an earlier rule."""
    if row["label"] is not None:
        row["label"] = right_or_wrong(row["verdict"], row["answer"], row["references"])
    return row


def label(answer: Answer, references: list[str]) -> tuple[str, str | None]:
    """(bench/answer.py's verdict, "right" / "wrong" / None for a refusal)."""
    v = verdict(answer, references)
    if v.startswith("refused"):
        return v, None
    return v, right_or_wrong(v, answer.answer, references)


def spread(questions: list[Question], stride: int = 5) -> list[Question]:
    """Every ``stride``-th question first, then the next offset: a cut-off run still covers every article."""
    return [q for offset in range(stride) for q in questions[offset::stride]]


def ordered_questions(half: str, questions: list[Question]) -> list[Question]:
    if half != "b":
        return spread(questions)
    first = questions[:: max(len(questions) // 60, 1)][:60]  # bench/answer.py -n 60
    chosen = {q.id for q in first}
    return first + spread([q for q in questions if q.id not in chosen])


def record(q: Question, answer: Answer, model_sha: str) -> dict[str, object]:
    v, lab = label(answer, q.answers)
    return {"id": q.id, "question": q.question, "references": q.answers, "answer": answer.answer, "verdict": v,
            "label": lab, "f1": round(f1(answer.answer, q.answers), 3), "old_verified": answer.rules_verified,
            "checks": answer.rule_checks, "p_correct": answer.p_correct, "unverified": list(answer.grounding.missing) if answer.grounding else [],
            "features": answer.features.to_json() if answer.features else None,
            "second_reply": answer.second_reply, "samples": answer.samples,
            "sample_seeds": list(SAMPLE_SEEDS) if answer.samples is not None else None,
            **({"asked_back": answer.asked_back} if answer.asked_back is not None else {}),
            "second_seconds": round(answer.second_seconds, 3),
            "seconds": round(answer.seconds, 3), "model": answer.model, "model_sha256": model_sha,
            "recited": True,  # its citations went through rag.answer.citations.recite (older records: see completed())
            # the passages shown with it, so a new feature can be tried on these records without the model
            "citations": [{"n": c.n, "cited": c.cited, "text": c.text} for c in answer.citations]}


def ask(answerer: Answerer, question: str) -> Answer:
    for event in answerer.run(question):
        if isinstance(event, Finished):
            return event.answer
    raise AssertionError("run() always ends with Finished")


def collect(dataset: Path, out: Path, questions: list[Question], n: int, minutes: float, model: str = MODEL) -> None:
    from rag.llm.models import get_model

    done = {json.loads(line)["id"] for line in out.open()} if out.exists() else set()
    todo = [q for q in questions[:n] if q.id not in done]
    with dataset_answerer(dataset, model, ask_twice=True, sample=True, ask_back=True) as answerer:
        ask(answerer, questions[0].question)  # warm-up: the model loads, the prompt head is evaluated
        sha = get_model(model).sha256
        started = time.monotonic()
        with out.open("a") as handle:
            for i, q in enumerate(todo, start=1):
                if time.monotonic() - started > 60 * minutes:
                    print(f"time is up after {i - 1} questions", file=sys.stderr)
                    break
                row = record(q, ask(answerer, q.question), sha)
                handle.write(json.dumps(row) + "\n")
                handle.flush()
                print(f"{out.name} {len(done) + i}: {row['label'] or row['verdict']}: {str(row['answer'])[:70]!r}",
                      file=sys.stderr)


@contextmanager
def dataset_answerer(dataset: Path, model: str = MODEL, **options: bool) -> Iterator[Answerer]:
    """The answer step over ``dataset``, indexed in a scratch folder, with the shipped settings (greedy, flagged
    answers shown) and ``model`` (``options``: ``Answerer``'s, e.g. ``sample=True``): what records are collected
    with, and a record's prompt rebuilt with (retrieval and the prompt's passage budget are deterministic)."""
    from rag.eval import ingest_dataset
    from rag.index.store import open_store
    from rag.llm import EmbeddedLLM
    from rag.retrieval.retriever import Retriever
    from rag.settings import Settings

    settings = Settings().model_copy(update={"temperature": 0.0, "llm": "embedded", "unverified_answers": "show",
                                             "embedded_model": model})
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "index")
        try:
            ingest_dataset(dataset, store)
            llm = EmbeddedLLM(model_name=model, n_threads=settings.llm_threads)
            yield Answerer(Retriever(store, settings=settings), llm, settings, **options)
        finally:
            store.close()


def prompt_of(answerer: Answerer, question: str) -> tuple[list[Message], list[Passage]]:
    """The messages and passages the answer step gave the model for ``question`` (no history)."""
    s = answerer.settings
    retrieval = answerer.retriever.retrieve(question, s.top_k)
    return answerer._messages(question, [], retrieval.relevant(s.min_relative_score))


def rewrite(path: Path, rows: list[dict]) -> None:
    """The records file replaced at once by ``rows`` (a cut-off run leaves the old file or the new one)."""
    new = path.with_suffix(".jsonl.new")
    new.write_text("".join(json.dumps(r) + "\n" for r in rows))
    new.replace(path)


def backfill(dataset: Path, path: Path, model: str = MODEL) -> None:
    """Give records written before they kept their passages (``citations``) the passages the model was given, rebuilt
    (``prompt_of``); the answer's ``[n]`` say which it cited. Marked ``"citations_rebuilt": true``. Needs the model's
    tokenizer (the model loads), never a generation."""
    from rag.answer.citations import cited_numbers

    rows = [json.loads(line) for line in path.open() if line.strip()]
    todo = [r for r in rows if "citations" not in r]
    if not todo:
        print(f"{path.name}: every record has its passages")
        return
    with dataset_answerer(dataset, model) as answerer:
        for r in todo:
            # a refusal cites nothing the features read
            passages = prompt_of(answerer, r["question"])[1] if r["label"] is not None else []
            _, cited = cited_numbers(r["answer"], {p.n for p in passages})
            r["citations"] = [{"n": p.n, "cited": p.n in cited, "text": p.text} for p in passages]
            r["citations_rebuilt"] = True
    rewrite(path, rows)
    print(f"{path.name}: passages rebuilt for {len(todo)} records")


def sample(dataset: Path, path: Path, minutes: float, model: str = MODEL) -> None:
    """Give each answered record the replies ``Answerer.samples`` draws at answer time (one per seed of
    SAMPLE_SEEDS, at SAMPLE_TEMPERATURE, to the second decoding's prompt: the record's prompt, rebuilt by
    ``prompt_of``, and the closing line asking for the bare answer): the ``consistency`` feature's material. A record
    keeps the seeds its samples were drawn with (``sample_seeds``); only the seeds it lacks are drawn. Samples kept
    without seeds (drawn before the seeds were fixed, from llama.cpp's own chain of seeds) are drawn again: on 107
    of half A's answers they said the answer again more often than seeded draws do (71 % against 59 % and 54 % for
    all three), so a calibrator fitted on them would read the answer step's samples as less sure than they are.
    Saved as it goes (``each_prompt``)."""
    from rag.answer.answerer import asking_again

    want = list(SAMPLE_SEEDS)

    def draw(answerer: Answerer, r: dict, messages: list[Message]) -> bool:
        seeds = r.get("sample_seeds") or []
        drawn = answerer.samples(asking_again(messages), want[len(seeds):])
        if drawn is None:
            return False
        r["samples"], r["sample_seeds"] = (r["samples"] if seeds else []) + drawn, want
        print(f"{path.name} {r['label']}: {r['answer'][:40]!r} <- {r['samples']}", file=sys.stderr)
        return True

    each_prompt(dataset, path, lambda r: (r.get("sample_seeds") or [])[: len(want)] != want, draw, minutes, model)


def ask_back(dataset: Path, path: Path, minutes: float, model: str = MODEL) -> None:
    """Give each answered record the question's token log-probabilities read back after its answer
    (``Answerer.asked_back`` on the record's prompt, rebuilt by ``prompt_of``), kept as ``asked_back``: the
    ``question_fit`` feature's material. Records read before the reply was read in one batch (``asked_back_batched``
    missing: one token at a time, until 2026-12-08) are read again: a batch of tokens is computed with other kernels
    and rounds a little differently, and records are read the way the answer step reads."""

    def read_back(answerer: Answerer, r: dict, messages: list[Message]) -> bool:
        scored = answerer.asked_back(messages, r["answer"], r["question"])
        if scored is None:
            return False
        r["asked_back"], r["asked_back_batched"] = scored, True
        return True

    each_prompt(dataset, path, lambda r: not r.get("asked_back_batched"), read_back, minutes, model)


def each_prompt(dataset: Path, path: Path, lacking: Callable[[dict], bool],
                add: Callable[[Answerer, dict, list[Message]], bool], minutes: float, model: str = MODEL) -> None:
    """``add`` what answered records ``lacking`` it lack, given the answerer and each record's prompt (rebuilt by
    ``prompt_of``), until ``minutes`` are up. Saved every 10 records (atomically), so a cut-off run keeps what it
    did; run again to go on."""
    rows = [json.loads(line) for line in path.open() if line.strip()]
    todo = [r for r in rows if r["label"] is not None and lacking(r)]
    started = time.monotonic()
    with dataset_answerer(dataset, model) as answerer:
        for i, r in enumerate(todo, start=1):
            if time.monotonic() - started > 60 * minutes:
                print(f"time is up after {i - 1} records", file=sys.stderr)
                break
            if add(answerer, r, prompt_of(answerer, r["question"])[0]) and i % 10 == 0:
                print(f"{path.name} {i}/{len(todo)}", file=sys.stderr)
                rewrite(path, rows)
    rewrite(path, rows)


def second_set(tmp: Path) -> Path:
    """data/sample's documents and the made-up ones of tests/data/verifier-set, with that set's questions."""
    docs = tmp / "second" / "docs"
    docs.mkdir(parents=True)
    for path in [*SAMPLE.iterdir(), *(SECOND_SET / "docs").iterdir()]:
        if path.suffix in (".pdf", ".md", ".txt"):
            shutil.copy(path, docs / path.name)
    shutil.copy(SECOND_SET / "questions.jsonl", tmp / "second" / "questions.jsonl")
    return tmp / "second"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="run the model, write labelled records")
    c.add_argument("--half", choices=["a", "b"])
    c.add_argument("--set", choices=["second"], dest="other")
    c.add_argument("-n", type=int, default=10_000, help="questions at most")
    c.add_argument("--minutes", type=float, default=15.0, help="stop asking after this long")
    c.add_argument("--skip", type=int, default=0, help="start this far into the order (a second process on the same half)")
    c.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_SET)
    c.add_argument("--model", default=MODEL, help=f"the embedded model to answer with ({MODEL})")
    r = sub.add_parser("backfill", help="rebuild the passages of records written before they kept them")
    r.add_argument("--half", choices=["a", "b"])
    r.add_argument("--set", choices=["second"], dest="other")
    r.add_argument("--model", default=MODEL)
    r.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_SET)
    for name, what in (("sample", "draw sampled replies for the records' self-consistency"),
                       ("ask-back", "read each record's question back after its answer")):
        m = sub.add_parser(name, help=what)
        m.add_argument("--half", choices=["a", "b"])
        m.add_argument("--set", choices=["second"], dest="other")
        m.add_argument("--minutes", type=float, default=30.0)
        m.add_argument("--model", default=MODEL)
        m.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_SET)
    f = sub.add_parser("fit", help="fit the calibrator on half A's records")
    f.add_argument("--model", default=MODEL, help=f"the embedded model whose answers to fit on ({MODEL})")
    f.add_argument("--records", type=Path, help="half A's records (default: the model's)")
    e = sub.add_parser("evaluate", help="half B and the second set: new calibrator against the old checks")
    e.add_argument("--model", default=MODEL, help=f"the embedded model whose calibrator to judge ({MODEL})")
    e.add_argument("--records", type=Path, nargs="*", help="held-out records (default: the model's half B and second set)")
    args = p.parse_args()
    ARTIFACTS.mkdir(exist_ok=True)
    if args.command in ("collect", "backfill", "sample", "ask-back"):
        if bool(args.half) == bool(args.other):
            p.error(f"{args.command} needs --half a|b or --set second")
        with tempfile.TemporaryDirectory() as tmp:
            if args.half:
                halves = {"a": Path(tmp) / "half-a", "b": Path(tmp) / "half-b"}
                split(args.dataset, halves["a"], halves["b"])
                dataset = halves[args.half]
                questions = ordered_questions(args.half, load_questions(dataset))
                out = records(args.half, args.model)
            else:
                dataset = second_set(Path(tmp))
                questions = load_questions(dataset)
                out = records("second", args.model)
            if args.command == "backfill":
                backfill(dataset, out, args.model)
            elif args.command == "sample":
                sample(dataset, out, args.minutes, args.model)
            elif args.command == "ask-back":
                ask_back(dataset, out, args.minutes, args.model)
            else:
                collect(dataset, out, questions[args.skip :], args.n - args.skip, args.minutes, args.model)
    elif args.command == "fit":
        from verifier_fit import fit
        fit(args.records or records("a", args.model), args.model)
    else:
        from verifier_fit import evaluate
        evaluate(args.records or [p for p in (records("b", args.model), records("second", args.model)) if p.exists()],
                 args.model)


if __name__ == "__main__":
    main()
