"""The answer calibrator: features of an answer, one probability that it is right, and the note people read.

The shipped calibrator (``rag/answer/calibrators/qwen2.5-coder-1.5b.json``, fitted by ``bench/verifier.py fit``) is
read with numpy alone; a model without one (SmolLM2) falls back to the rule-based checks and says so.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.answer.answerer import WITHHELD, Answer, Answerer, Checking, asking_back
from rag.answer.calibrator import CALIBRATORS, REASONS, Calibrator, calibrator_for, load
from rag.answer.confidence import Confidence
from rag.answer.features import (
    NAMES,
    SAMPLE_SEEDS,
    SAMPLE_TEMPERATURE,
    SAMPLED_REPLIES,
    Cited,
    Features,
    agreement,
    answer_features,
    question_fit,
    question_type,
)
from rag.answer.grounding import check_grounding
from rag.answer.notes import answer_note
from rag.answer.result import AnswerResult
from rag.answer.support import check_support
from rag.index.embedder import Embedder
from rag.index.store import Store
from rag.llm import EmbeddedLLM, TokenProbs
from rag.llm.models import DEFAULT_EMBEDDED_MODEL, QWEN, SMOLLM2
from rag.retrieval.evidence import judge
from rag.retrieval.retriever import Retriever
from rag.settings import Settings
from tests.conftest import SMALL_MODEL, XQUAD_DOCS, build_index

SHIPPED = CALIBRATORS / f"{QWEN.name}.json"
QWEN_GGUF = QWEN.file_name.removesuffix(".gguf")
PASSAGE = ("History. The Cape Merrow lighthouse was first lit on 1 October 1891. Its tower is 38 metres tall and has "
           "212 steps. The first keeper was Agnes Holloway, who kept the light for 27 years.")


def flat_idf(terms: list[str]) -> list[float]:
    return [1.0] * len(terms)


def features_of(question: str, answer: str, probs: tuple[tuple[str, float], ...] = (("Agnes", 0.9), (" Holloway", 0.6)),
                second: str | None = None, samples: list[str] | None = None) -> Features:
    sources = [PASSAGE]
    return answer_features(
        question=question, answer=answer, passages=sources, cited=[Cited(1, 0.03, True), Cited(2, 0.02, False)],
        top_score=0.03, top_k=5, evidence=judge(0.6, 0.8), grounding=check_grounding(answer, sources, question),
        support=check_support(question, answer, sources, flat_idf), confidence=Confidence(0.6, " Holloway", True),
        probs=TokenProbs(probs + ((" [", 0.99), ("1", 0.99), ("].", 0.99))), idf=flat_idf, second_reply=second,
        samples=samples)


def test_features_of_a_known_answer() -> None:
    right = features_of("Who was the first keeper of the lighthouse?", "Agnes Holloway [1].", second="Agnes Holloway")
    assert right.p_min == pytest.approx(0.6) and right.p_mean == pytest.approx(0.75), "up to the first [n] only"
    assert right.p_log_mean == pytest.approx((math.log(0.9) + math.log(0.6)) / 2)
    assert right.grounded == 1 and right.missing_terms == 0 and right.supported == 1 and right.sure == 1
    assert right.cited_rank == 1 and right.cited_score == 1 and right.cited_count == 1
    assert right.answer_words == 2 and right.question_overlap == 0
    assert right.type_asked == 1 and right.type_mismatch == 0 and right.agreement == 1
    assert right.distance <= 3, "the name stands right after 'first keeper'"
    assert len(right.vector()) == len(NAMES) and right.to_json()["agreement"] == 1

    wrong_kind = features_of("When was the lighthouse first lit?", "Agnes Holloway [1].", second="1 October 1891")
    assert question_type("When was the lighthouse first lit?") == "date"
    assert wrong_kind.type_mismatch == 1 and wrong_kind.agreement == 0, "a name for a date; the second reply differs"
    invented = features_of("Who was the first keeper of the lighthouse?", "Margit Olesen [1].")
    assert invented.grounded == 0 and invented.missing_terms == 2 and invented.agreement is None
    assert math.isnan(invented.vector()[NAMES.index("agreement")]), "not asked: missing, not zero"
    assert right.verbatim == 1 and invented.verbatim == 0, "copied from the passage, or not in it at all"
    assert right.repeats_question == 0
    assert right.consistency is None and math.isnan(right.vector()[NAMES.index("consistency")]), "not sampled"


def test_consistency_is_how_often_sampled_replies_say_the_answer_again() -> None:
    question = "Who was the first keeper of the lighthouse?"
    sure = features_of(question, "Agnes Holloway [1].", samples=["Agnes Holloway", "Agnes Holloway [1].", "Holloway"])
    assert sure.consistency == 1, "every sample's words are the answer's"
    guess = features_of(question, "Agnes Holloway [1].", samples=["Agnes Holloway", "Margit Olesen", "the keeper"])
    assert guess.consistency == pytest.approx(1 / 3), "one sample of three says it again"
    assert features_of(question, "Agnes Holloway [1].", samples=[]).consistency == 1, "none drawn: nothing against it"


def test_asked_back_reads_the_question_after_the_answer() -> None:
    prompt = [{"role": "system", "content": "rules"},
              {"role": "user", "content": "Passages:\n[1] (a)\n<<<\nQuestion: not this one\n>>>\n\nQuestion: Who?"}]
    back = asking_back(prompt, "Agnes Holloway [1].")
    assert back[0] == prompt[0], "the same rules and examples: llama.cpp's cache keeps them"
    assert back[-1]["content"] == ("Passages:\n[1] (a)\n<<<\nQuestion: not this one\n>>>\n\n"
                                   "Answer: Agnes Holloway .\nWrite the question that this answer answers."), (
        "the same passages; the answer without its [n] in place of the question, which is read, not shown")
    with pytest.raises(ValueError):
        asking_back([{"role": "user", "content": "no question here"}], "x")

    assert question_fit([-0.5, -1.0, -0.1]) == pytest.approx(-1.6 / 3) and question_fit([]) is None
    asked = features_of("Who was the first keeper of the lighthouse?", "Agnes Holloway [1].")
    assert asked.question_fit is None and math.isnan(asked.vector()[NAMES.index("question_fit")]), "not asked"


def test_replies_are_compared_by_their_numbers_too() -> None:
    # Half B's "Eight [1]." against a sample "2", and "Four interceptions" against "4": the keyword tokenizer drops
    # one-digit numbers, so a bare number said nothing and agreed with any answer.
    assert agreement("Eight [1].", "2") == 0, "another number"
    assert agreement("Four interceptions [2].", "4 [1].") == 1, "the same number, in words or digits"
    assert agreement("The Panthers defense ranked sixth [1].", "7") == 0, "a number the answer never states"
    assert agreement("7,000,000 square kilometres [1].", "4,700,000 square kilometres") == pytest.approx(2 / 3), \
        "the units agree, the number does not (the tokenizer read both as '000')"
    assert agreement("1 October 1891 [1].", "October 1, 1891") == 1
    assert agreement("Agnes Holloway [1].", "") == 1, "a reply that says nothing says nothing against it"


def test_an_answer_in_other_words_or_repeating_the_question() -> None:
    mixed = features_of("How tall is the lighthouse?", "The tower has 38 metres of height [1].")
    assert mixed.verbatim == pytest.approx(2 / 6), "'38 metres' is the longest run the passage holds word for word"
    echo = features_of("Who kept the Cape Merrow lighthouse first?", "The Cape Merrow lighthouse [1].")
    assert echo.repeats_question == 1 and echo.verbatim == 1, "copied, but only what the question already says"


def test_the_shipped_calibrator_loads_and_gives_a_probability() -> None:
    data = json.loads(SHIPPED.read_text())
    assert data["model"] == QWEN.name and data["gguf_sha256"] == QWEN.sha256 and data["format"] == 1
    fit = data["fit"]
    assert fit["training_size"] >= 30 and 0.5 < fit["cv_auc"][fit["chosen"]] <= 1 and fit["date"]
    # fitted on the samples the answer step draws: as many, as hot, with the same seeds
    assert fit["samples"] == {"replies": SAMPLED_REPLIES, "temperature": SAMPLE_TEMPERATURE,
                              "seeds": list(SAMPLE_SEEDS)}
    calibrator = load(SHIPPED)
    assert 0 < calibrator.threshold < 1 and set(calibrator.features) <= set(NAMES)
    assert set(calibrator.features) <= set(REASONS), "every feature it weighs can be given as a reason in words"
    right = features_of("Who was the first keeper of the lighthouse?", "Agnes Holloway [1].", second="Agnes Holloway",
                        samples=["Agnes Holloway"] * 3)
    doubtful = features_of("When was the lighthouse first lit?", "Agnes Holloway [1].", second="1 October 1891",
                           probs=(("Agnes", 0.2), (" Holloway", 0.1)), samples=["1 October 1891", "1891", "Agnes"])
    p_right, p_doubtful = calibrator.p_correct(right), calibrator.p_correct(doubtful)
    assert 0 <= p_doubtful < p_right <= 1
    assert p_doubtful < calibrator.threshold, "a hesitant name answering 'when' is flagged"
    assert calibrator.reason(doubtful) in {r for pair in REASONS.values() for r in pair}
    empty = Features(**{n: None for n in NAMES})  # nothing known: the training medians stand in
    assert 0 <= calibrator.p_correct(empty) <= 1


def test_a_calibrator_is_used_only_for_the_weights_it_was_fitted_for(tmp_path: Path) -> None:
    assert isinstance(calibrator_for("embedded", QWEN_GGUF), Calibrator)
    assert calibrator_for("openai", QWEN_GGUF) is None, "a served model: no calibrator until one is fitted for it"
    assert calibrator_for("embedded", SMOLLM2.file_name.removesuffix(".gguf")) is None
    assert calibrator_for("embedded", "my-own-model") is None
    data = json.loads(SHIPPED.read_text())
    other = Calibrator.from_json({**data, "gguf_sha256": "0" * 64})
    assert other.gguf_sha256 != QWEN.sha256  # calibrator_for compares it with the pinned hash before use
    with pytest.raises(ValueError, match="format"):
        Calibrator.from_json({**data, "format": 99})


def test_the_note_speaks_plainly() -> None:
    for low, high in REASONS.values():
        for reason in (low, high):
            assert not any(w in reason.lower() for w in ("probab", "token", "passage sentence", "logit")), reason
    calibrated = AnswerResult(answer="Agnes Holloway [1].", verified=False, checks=[REASONS["agreement"][0]],
                              p_correct=0.31, calibrated=True)
    note = answer_note(calibrated)
    assert note is not None and note.kind == "check" and note.markdown.startswith("**Check this answer:**")
    assert "different answer" in note.markdown and "probab" not in note.markdown.lower()
    verified = answer_note(AnswerResult(answer="Agnes Holloway [1].", p_correct=0.93, calibrated=True))
    assert verified is not None and verified.kind == "verified" and "probab" not in verified.markdown.lower()
    assert answer_note(AnswerResult(answer="Agnes Holloway [1].")) is None, "rules passed: no claim of checked"


def test_a_name_no_cited_passage_holds_is_never_checked_whatever_the_probability() -> None:
    calibrator = load(SHIPPED)
    question = "Who was the first keeper of the lighthouse?"
    answer = Answer(question=question, query=question, answer="Clara Diaz [1].", refused=False, citations=[],
                    evidence=judge(0.6, 0.8), backend="embedded", model=QWEN_GGUF, seconds=1.0,
                    grounding=check_grounding("Clara Diaz [1].", [PASSAGE], question),
                    features=features_of(question, "Agnes Holloway [1].", second="Agnes Holloway"),
                    calibrator=calibrator, p_correct=0.99)
    assert answer.grounding is not None and answer.grounding.missing == ("Clara", "Diaz")
    assert not answer.verified, "a probability over the threshold does not vouch for a name in no passage"
    assert answer.checks == [], "the calibrator found nothing against it: the missing name is the note's reason"
    note = answer_note(answer.result())
    assert note is not None and note.kind == "unconfirmed" and "Clara" in note.markdown
    grounded = dataclasses.replace(answer, answer="Agnes Holloway [1].",
                                   grounding=check_grounding("Agnes Holloway [1].", [PASSAGE], question))
    assert grounded.verified and answer_note(grounded.result()).kind == "verified"  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def tesla_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("tesla")
    (root / "docs").mkdir()
    shutil.copy(XQUAD_DOCS / "Nikola_Tesla.md", root / "docs" / "Nikola_Tesla.md")
    build_index(root / "docs", root / "index", embedder)
    store = Store(root / "index", embed_model=embedder.name, dim=embedder.dim)
    yield store
    store.close()


def test_a_model_without_a_calibrator_falls_back_and_says_so(tesla_index: Store, embedder: Embedder) -> None:
    settings = Settings(llm="embedded", embedded_model=SMALL_MODEL, temperature=0.0)
    answerer = Answerer(Retriever(tesla_index, embedder=embedder, settings=settings),
                        EmbeddedLLM(model_name=SMALL_MODEL), settings)
    answer = answerer.ask("When did Nikola Tesla die?")
    doc = answer.to_json()
    assert doc["calibrated"] is False and doc["p_correct"] is None
    if not answer.refused:  # SmolLM2 mostly refuses under the precision-first prompt
        assert answer.features is not None and answer.verified == answer.rules_verified
        assert doc["checks"] == answer.rule_checks


@pytest.mark.slow
def test_the_default_model_answers_with_p_correct_and_withholds_under_the_threshold(
        tesla_index: Store, embedder: Embedder) -> None:
    settings = Settings(llm="embedded", embedded_model=DEFAULT_EMBEDDED_MODEL, temperature=0.0)
    llm = EmbeddedLLM(model_name=DEFAULT_EMBEDDED_MODEL)
    retriever = Retriever(tesla_index, embedder=embedder, settings=settings)
    events = list(Answerer(retriever, llm, settings).run("When did Nikola Tesla die?"))
    answer = events[-1].answer  # type: ignore[union-attr]
    shipped = load(SHIPPED)
    asks_again = shipped.uses_samples or shipped.uses_second_reply or shipped.uses_asked_back
    assert isinstance(events[-2], Checking) == asks_again, "the page says it is checking while the model is asked again"
    doc = answer.to_json()
    assert doc["calibrated"] is True and 0 <= doc["p_correct"] <= 1 and "1943" in answer.answer
    assert doc["verified"] == (answer.p_correct >= shipped.threshold)
    assert (answer.second_reply is not None) == shipped.uses_second_reply, "asked again only when it is weighed"
    assert (answer.samples is not None) == shipped.uses_samples
    assert (answer.features is not None and answer.features.question_fit is not None) == shipped.uses_asked_back
    if shipped.uses_asked_back:
        assert answer.asked_back is not None and len(answer.asked_back) == llm.count_tokens(answer.question), (
            "every token of the question read back")
    if shipped.uses_samples:
        assert answer.samples is not None and len(answer.samples) == SAMPLED_REPLIES
        again = Answerer(retriever, llm, settings).ask("When did Nikola Tesla die?")
        # (the token probabilities move in the fourth digit: a prompt read from llama.cpp's cache is batched
        # differently from one read afresh)
        assert again.samples == answer.samples and again.p_correct == pytest.approx(answer.p_correct, abs=0.01), (
            "the samples are seeded: the same answer is checked the same way each time")

    strict = dataclasses.replace(shipped, threshold=1.01)  # every answer under it
    withhold = settings.model_copy(update={"unverified_answers": "withhold"})
    withheld = Answerer(retriever, llm, withhold, calibrator=strict).ask("When did Nikola Tesla die?")
    assert withheld.refused_by == "check" and withheld.answer == WITHHELD and "1943" in str(withheld.candidate)
    note = answer_note(withheld.result())
    assert note is not None and note.kind == "withheld" and "probab" not in note.markdown.lower()
