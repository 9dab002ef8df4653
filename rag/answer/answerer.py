"""Question in, grounded answer out: rewrite → retrieve → (refuse without evidence) → prompt → stream → cite → check.

``Answerer.run`` yields events as they happen, so a UI can show the passages first and then the answer word by
word; ``Answerer.ask`` collects them into one ``Answer``.

The prompt is precision-first: rules, then worked examples written as chat turns (``rag/prompts/answer_examples``:
answer in one short sentence with the passage's own words and an ``[n]``, or the exact refusal sentence), then the
conversation, then the passages and the question. Everything before the conversation is the same for every
question, so llama.cpp keeps its KV cache and only the passages are evaluated anew. Every answer is then checked:
against the passages it cites (``rag.answer.grounding``: names and numbers none of them says), against the question
(``rag.answer.support``: an answer from a sentence about something else) and against the model's own certainty
(``rag.answer.confidence``). Their results and a few cheap signals more make the answer's features
(``rag.answer.features``); a model with a calibrator fitted for its weights (``rag.answer.calibrator``) turns them
into ``p_correct``, and ``verified`` is ``p_correct >= threshold``; a model without one is verified when every check
passes. With ``unverified_answers="withhold"`` an unverified answer is replaced by ``WITHHELD``
(``refused_by="check"``) and kept as ``candidate``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from rag.answer.calibrator import Calibrator, calibrator_for
from rag.answer.citations import cited_numbers, make_citations, recite
from rag.answer.confidence import Confidence, answer_confidence
from rag.answer.context import Passage, fit_passages, format_passages
from rag.answer.features import (
    ASKED_BACK_LINE,
    SAMPLE_MAX_TOKENS,
    SAMPLE_SEEDS,
    SAMPLE_TEMPERATURE,
    SAMPLED_REPLIES,
    SECOND_REPLY_LINE,
    Cited,
    Features,
    answer_features,
    answer_text,
)
from rag.answer.grounding import Grounding, check_grounding
from rag.answer.result import AnswerResult, Citation, RefusedBy
from rag.answer.result import Usage as ResultUsage
from rag.answer.rewrite import as_asked, names_its_subject, standalone_query
from rag.answer.support import Support, check_support
from rag.answer.thinking import hide_thinking
from rag.llm import LLM, LLMError, Message, TokenProbs, Usage
from rag.prompts import load, load_turns
from rag.retrieval.evidence import Evidence
from rag.retrieval.retriever import Hit, Retriever
from rag.settings import Settings, get_settings

NOT_FOUND = "I could not find this in your documents."
MODEL_REFUSAL = "The documents do not contain the answer."
WITHHELD = "I could not confirm an answer in your documents."
_PROMPT_MARGIN = 16  # tokens of the chat template around the messages
_MESSAGE_OVERHEAD = 5  # ChatML's role markers around each message
# The refusal the prompt asks for, and the ways models paraphrase it ("The passage does not mention ...").
_REFUSAL = re.compile(r"\b(documents?|passages?|context|text)\b[^.\n]{0,40}?\b(do|does|did)\s*(not|n't)\s+"
                      r"(contain|mention|say|include|provide|state|specify|give)", re.IGNORECASE)
# A model that goes on past its answer starts another example: cut there.
STOP = ["\nQuestion:", "\nPassages:", "\n### "]


@dataclass(frozen=True, kw_only=True)
class AskedAgain:
    """What asking the model again after its answer found, each None when it was not asked (``Answerer.ask_twice``,
    ``sample``, ``ask_back``, or the model's calibrator weighing it), and what it cost."""

    second_reply: str | None = None
    samples: list[str] | None = None
    asked_back: list[float] | None = None
    seconds: float = 0.0


NOT_ASKED = AskedAgain()


@dataclass(kw_only=True)
class Answer:
    """The answer step's own record, with the checks' full results; ``result()`` is what leaves the pipeline."""

    question: str
    query: str  # what was searched (the question made standalone)
    answer: str
    refused: bool
    citations: list[Citation]
    evidence: Evidence | None
    backend: str
    model: str
    seconds: float
    usage: Usage | None = None
    error: str | None = None
    grounding: Grounding | None = None  # None for a refusal: it states nothing to check
    # "retrieval" (no evidence, model not asked), "model" (it said so) or "check" (withheld: unverified_answers)
    refused_by: RefusedBy | None = None
    support: Support | None = None  # does it answer the question asked (rag.answer.support)
    confidence: Confidence | None = None  # how sure the model was (rag.answer.confidence); None: not reported
    candidate: str | None = None  # the model's own answer, when it was withheld (refused_by == "check")
    features: Features | None = None  # what a calibrator weighs (rag.answer.features); None for a refusal
    second_reply: str | None = None  # the bare answer asked for a second time, when it was (``Answerer.ask_twice``)
    samples: list[str] | None = None  # the bare answer sampled again, when it was (``Answerer.sample``)
    asked_back: list[float] | None = None  # the question's token log-probabilities read back after the answer
    second_seconds: float = 0.0  # what asking again (the second reply, the samples, reading back) cost
    # The model's calibrator and its verdict: when there is one, ``verified`` is p_correct >= its threshold
    calibrator: Calibrator | None = None
    p_correct: float | None = None

    @property
    def verified(self) -> bool:
        """Calibrated: p_correct reaches the calibrator's threshold and every name and number of the answer is in
        a passage it cites (no probability makes a name that no passage holds checked). Otherwise (no calibrator for
        this model, or an answer that failed before it was scored) every rule-based check passed."""
        if self.calibrator is not None and self.p_correct is not None:
            return self.p_correct >= self.calibrator.threshold and (self.grounding is None or self.grounding.verified)
        return self.rules_verified

    @property
    def rules_verified(self) -> bool:
        """The rule-based checks' verdict: names and numbers grounded, the question answered, the model sure."""
        return ((self.grounding is None or self.grounding.verified) and (self.support is None or self.support.answers)
                and (self.confidence is None or self.confidence.sure))

    @property
    def checks(self) -> list[str]:
        """Why the answer is not verified, for people (the grounding check's terms are listed apart): the reason
        that weighed most against it when calibrated, the failed rule-based checks otherwise."""
        if self.calibrator is not None and self.p_correct is not None and self.features is not None:
            return [] if self.p_correct >= self.calibrator.threshold else [self.calibrator.reason(self.features)]
        return self.rule_checks

    @property
    def rule_checks(self) -> list[str]:
        """The failed rule-based checks, for people."""
        return [*(self.support.reasons if self.support else ()),
                *([self.confidence.reason] if self.confidence and not self.confidence.sure else [])]

    def result(self) -> AnswerResult:
        """The answer as everything outside the pipeline sees it (``rag.answer.result``)."""
        return AnswerResult(
            mode="answer", question=self.question, query=self.query, answer=self.answer, refused=self.refused,
            refused_by=self.refused_by, citations=self.citations, verified=self.verified,  # type: ignore[arg-type]
            unverified=list(self.grounding.missing) if self.grounding else [], checks=self.checks,
            confidence=round(self.confidence.lowest, 3) if self.confidence else None, candidate=self.candidate,
            p_correct=round(self.p_correct, 3) if self.p_correct is not None else None,
            calibrated=self.calibrator is not None and self.p_correct is not None,
            error=self.error, backend=self.backend, model=self.model, seconds=round(self.seconds, 3),
            usage=ResultUsage(prompt_tokens=self.usage.prompt_tokens, completion_tokens=self.usage.completion_tokens)
            if self.usage else None,
            evidence=self.evidence.to_json() if self.evidence else None,
        )

    def to_json(self) -> dict[str, object]:
        return self.result().to_json()


def prompt_head() -> list[Message]:
    """What opens every answer prompt, byte for byte: the rules and the worked examples."""
    examples: list[Message] = [{"role": role, "content": text} for role, text in load_turns("answer_examples")]
    return [{"role": "system", "content": load("answer_system")}, *examples]


def warm_up(llm: LLM) -> None:
    """Load the model and evaluate the prompt head now (the app does it in the background as it starts), so even
    the first question costs only its passages. Failures are left for the first question to report."""
    try:
        llm.warm(prompt_head())
    except LLMError:
        pass


@dataclass(frozen=True)
class Retrieved:
    """Passages found; ``refused`` when none of them is evidence enough to ask the model."""

    query: str
    hits: list[Hit]
    evidence: Evidence
    refused: bool


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Checking:
    """The answer is written; the model is asked again to check it (``agreement``, ``consistency``, ``question_fit``):
    a few seconds."""


@dataclass(frozen=True)
class Finished:
    answer: Answer


Event = Retrieved | Delta | Checking | Finished


@dataclass
class Answerer:
    retriever: Retriever
    llm: LLM
    settings: Settings = field(default_factory=get_settings)
    # Ask for the bare answer a second time (the ``agreement`` feature, about 1 s more): done when this is on, or
    # when the model's calibrator weighs it
    ask_twice: bool = False
    # Sample the bare answer SAMPLED_REPLIES times (the ``consistency`` feature, 2-4 s more): done when this is on,
    # or when the model's calibrator weighs it
    sample: bool = False
    # Read the question back after the answer (``question_fit``, about 1 s more): done when this is on, or when the
    # model's calibrator weighs it
    ask_back: bool = False
    calibrate: bool = True  # False: the rule-based checks decide ``verified`` even for a model with a calibrator
    calibrator: Calibrator | None = None  # this one instead of the model's own (rag.answer.calibrator.calibrator_for)

    def ask(self, question: str, history: list[Message] | None = None) -> Answer:
        for event in self.run(question, history):
            if isinstance(event, Finished):
                return event.answer
        raise AssertionError("run() always ends with Finished")

    def run(self, question: str, history: list[Message] | None = None) -> Iterator[Event]:
        started = time.perf_counter()
        history = list(history or [])
        s = self.settings
        query = standalone_query(question, history, self.llm, s.rewrite)
        retrieval = self.retriever.retrieve(query, s.top_k)
        if query != question and not retrieval.evidence.found and names_its_subject(question):
            # Joined to (or rewritten with) an earlier question about something else, a question the documents
            # answer can lose its evidence ("And how much is a child ticket?" after a refused one): try it alone.
            # Not a pronoun follow-up: "And when did she die?" alone would find anyone's death.
            alone = self.retriever.retrieve(question, s.top_k)
            if alone.evidence.found:
                query, retrieval = question, alone
        refused = not retrieval.evidence.found or not retrieval.hits
        yield Retrieved(query, retrieval.hits, retrieval.evidence, refused)

        usage: Usage | None = None
        calibrator = (self.calibrator or calibrator_for(self.llm.backend, self.llm.model)) if self.calibrate else None

        def finish(text: str, refused_by: RefusedBy | None, citations: list[Citation], error: str | None = None,
                   checked: tuple[Grounding, Support, Confidence | None] | None = None,
                   features: Features | None = None,
                   rechecked: AskedAgain = NOT_ASKED,
                   ) -> Finished:
            grounding, support, confidence = checked or (None, None, None)
            answer = Answer(question=question, query=query, answer=text, refused=refused_by is not None,
                            citations=citations, evidence=retrieval.evidence, backend=self.llm.backend,
                            model=self.llm.model, seconds=time.perf_counter() - started, usage=usage, error=error,
                            grounding=grounding, refused_by=refused_by, support=support, confidence=confidence,
                            features=features, second_reply=rechecked.second_reply, samples=rechecked.samples,
                            asked_back=rechecked.asked_back, second_seconds=rechecked.seconds,
                            calibrator=calibrator if features else None,
                            p_correct=calibrator.p_correct(features) if calibrator and features else None)
            if checked and not error and not answer.verified and s.unverified_answers == "withhold":
                answer.candidate, answer.answer, answer.refused, answer.refused_by = text, WITHHELD, True, "check"
            return Finished(answer)

        if refused:
            yield Delta(NOT_FOUND)
            closest = [Passage(i, h, h.chunk.text) for i, h in enumerate(retrieval.hits[:3], start=1)]
            yield finish(NOT_FOUND, "retrieval", self._citations(closest, query, set(), query))
            return

        try:  # counting the prompt's tokens loads an embedded model: one that cannot load fails here first
            asked = as_asked(question) if history else question  # a follow-up's own question, not a continuation
            messages, passages = self._messages(asked, history, retrieval.relevant(s.min_relative_score))
        except LLMError as exc:
            yield finish("", None, [], error=str(exc))
            return
        shown: list[str] = []
        generation = self.llm.stream(messages, max_tokens=s.max_answer_tokens, temperature=s.temperature, stop=STOP)
        try:
            for delta in hide_thinking(generation):
                shown.append(delta)
                yield Delta(delta)
        except LLMError as exc:
            partial = "".join(shown).strip()
            yield finish(partial, None, self._citations(passages, partial, set(), query), error=str(exc),
                         checked=self._check(partial, passages, [], question, None))
            return
        finally:
            generation.close()  # a reader that stopped early frees the model at once
        usage = generation.usage

        text, cited = cited_numbers("".join(shown).strip(), {p.n for p in passages})
        if _REFUSAL.search(text):
            yield finish(text, "model", self._citations(passages, query, set(), query))
            return
        cited = recite(text, {p.n: p.text for p in passages}, cited, question)  # a mis-numbered citation
        by_number = {p.n: p for p in passages}
        ordered = [by_number[n] for n in cited] or passages  # nothing cited: list the sources consulted
        checked = self._check(text, passages, cited, question, generation.token_probs)
        if cited and not checked[0].verified:  # the cited passages lack some of its words: show the others too
            ordered = [*ordered, *(p for p in passages if p.n not in cited)]
        checking_started = time.perf_counter()
        twice = self.ask_twice or (calibrator is not None and calibrator.uses_second_reply)
        sampled = self.sample or (calibrator is not None and calibrator.uses_samples)
        back = self.ask_back or (calibrator is not None and calibrator.uses_asked_back)
        rechecked = NOT_ASKED
        if twice or sampled or back:
            yield Checking()
            again = asking_again(messages)
            rechecked = AskedAgain(
                second_reply=self._reply(again, 0.0) if twice else None,
                samples=self.samples(again) if sampled else None,
                asked_back=self.asked_back(messages, text, asked) if back else None,  # the question the prompt holds
                seconds=time.perf_counter() - checking_started)
        features = answer_features(
            question=question, answer=text, passages=[p.text for p in passages],
            cited=[Cited(p.hit.rank, p.hit.score, p.n in cited) for p in passages],
            top_score=retrieval.hits[0].score, top_k=s.top_k, evidence=retrieval.evidence, grounding=checked[0],
            support=checked[1], confidence=checked[2], probs=generation.token_probs, idf=self.retriever.store.idf,
            second_reply=rechecked.second_reply, samples=rechecked.samples, asked_back=rechecked.asked_back)
        yield finish(text, None, self._citations(ordered, text, set(cited), query), checked=checked,
                     features=features, rechecked=rechecked)

    def _reply(self, again: list[Message], temperature: float, max_tokens: int = 32,
               seed: int | None = None) -> str | None:
        """The bare answer asked for again (``asking_again``): only the closing line and the reply are evaluated
        anew (the KV cache holds the rest). None when the model fails this time."""
        try:
            return self.llm.complete(again, max_tokens=max_tokens, temperature=temperature, stop=STOP,
                                     seed=seed).strip()
        except LLMError:
            return None

    def samples(self, again: list[Message], seeds: Sequence[int] = SAMPLE_SEEDS) -> list[str] | None:
        """Replies sampled at SAMPLE_TEMPERATURE, one per seed (SAMPLE_SEEDS: the same answer to the same passages
        is checked the same way each time); None when the model fails."""
        replies = [self._reply(again, SAMPLE_TEMPERATURE, SAMPLE_MAX_TOKENS, seed=seed) for seed in seeds]
        return None if any(r is None for r in replies) else [r for r in replies if r is not None]

    def asked_back(self, messages: list[Message], answer: str, question: str) -> list[float] | None:
        """The question's token log-probabilities read back after the answer (``asking_back``); None when the
        backend cannot tell or fails."""
        try:
            return self.llm.reply_logprobs(asking_back(messages, answer), question)
        except LLMError:
            return None

    def _check(self, text: str, passages: list[Passage], cited: list[int], question: str,
               probs: TokenProbs | None) -> tuple[Grounding, Support, Confidence | None]:
        """Names and numbers of the answer against the passages it cites (all it was given if it cites none);
        whether it answers the question from any passage it was given (small models mis-number their citations);
        and how sure the model was of it."""
        sources = [p.text for p in passages if p.n in cited] or [p.text for p in passages]
        return (check_grounding(text, sources, question),
                check_support(question, text, [p.text for p in passages], self.retriever.store.idf),
                answer_confidence(probs))

    def _messages(self, question: str, history: list[Message], hits: list[Hit]) -> tuple[list[Message], list[Passage]]:
        """System rules, worked examples, a little history, and as many passages as the context window holds."""
        recent = [m for m in history if m.get("role") in ("user", "assistant")][-2 * self.settings.history_turns :]
        head: list[Message] = [*prompt_head(), *recent]
        template = load("answer_user")
        fixed = sum(self.llm.count_tokens(m["content"]) + _MESSAGE_OVERHEAD for m in head)
        fixed += self.llm.count_tokens(template.format(passages="", question=question)) + _PROMPT_MARGIN
        budget = self.llm.context_window - self.settings.max_answer_tokens - fixed
        passages = fit_passages(hits, budget, self.llm.count_tokens)
        user = template.format(passages=format_passages(passages), question=question)
        return [*head, {"role": "user", "content": user}], passages

    def _citations(self, passages: list[Passage], claim_source: str, cited: set[int], query: str) -> list[Citation]:
        return make_citations(passages, claim_source, cited, self.retriever.embedder.embed, query)


def asking_back(messages: list[Message], answer: str) -> list[Message]:
    """The answer prompt with its closing question replaced by the answer and a request for the question it answers
    (ASKED_BACK_LINE): it opens with the answer prompt's passages, which the KV cache holds."""
    template = load("answer_user")  # what stands between the passages and the question, as the prompt writes it
    opening = template[template.index("{passages}") + len("{passages}") : template.index("{question}")]
    last = messages[-1]
    passages, found, _ = last["content"].rpartition(opening)
    if not found:
        raise ValueError("the answer prompt's last message has no closing question")
    back = f"{passages}\n\n{ASKED_BACK_LINE.format(answer=answer_text(answer))}"
    return [*messages[:-1], {"role": last["role"], "content": back}]


def asking_again(messages: list[Message]) -> list[Message]:
    """The same prompt with one closing line asking for the bare answer (SECOND_REPLY_LINE)."""
    last = messages[-1]
    return [*messages[:-1], {"role": last["role"], "content": f"{last['content']}\n\n{SECOND_REPLY_LINE}"}]
