"""Turn a follow-up question ("and when did he die?") into a standalone search query before retrieval."""

from __future__ import annotations

import re

from rag.index.keyword import tokenize
from rag.llm import LLM, LLMError, Message
from rag.prompts import load

_FOLLOW_UP = re.compile(
    r"\b(he|she|it|they|him|her|his|hers|its|them|their|theirs|this|that|these|those|there|then|the same)\b"
    r"|^\s*(and|but|also|what about|how about|why|so)\b",
    re.IGNORECASE,
)


def looks_like_follow_up(question: str) -> bool:
    return bool(_FOLLOW_UP.search(question)) or len(question.split()) <= 3


_LEADING_CONJUNCTION = re.compile(r"^\s*(and|but|also|so)\b[\s,]*", re.IGNORECASE)


def names_its_subject(question: str) -> bool:
    """A question that could stand alone once a leading "and"/"but" is set aside: "And in what year did Tesla
    die?" does, "And when did she die?" does not."""
    return not looks_like_follow_up(_LEADING_CONJUNCTION.sub("", question))


def as_asked(question: str) -> str:
    """A follow-up as the answering model should read it: without its leading "and"/"but" ("and when was it
    built?" -> "When was it built?"). After a turn about the designer, a question that opens with "and" reads to a
    small model as the earlier question's continuation, and it answers the earlier one again."""
    rest = _LEADING_CONJUNCTION.sub("", question)
    return rest[:1].upper() + rest[1:] if rest.strip() else question


def previous_questions(history: list[Message]) -> list[str]:
    return [m["content"] for m in history if m.get("role") == "user" and m.get("content", "").strip()]


def followed_question(question: str, history: list[Message]) -> str | None:
    """The earlier question that ``question`` follows up, or None when it is not a follow-up (or is the first)."""
    earlier = previous_questions(history)
    return earlier[-1] if earlier and looks_like_follow_up(question) else None


_CAPITALISED = re.compile(r"\b[^\W\d_][\w'’-]*", re.UNICODE)
# Words a follow-up is made of besides what it asks: its pronouns and openers ("and what about it?").
_FOLLOW_UP_WORDS = frozenset(tokenize(" ".join(
    "he she it they him her his hers its them their theirs this that these those there then same also what about "
    "how why so and but".split())))


def subject_of(question: str) -> str | None:
    """The names a question is about, its capitalised words after the first ("Who designed the Brightwater
    Observatory?" -> "Brightwater Observatory"); None when it names nothing that way."""
    words = [m.group(0) for m in _CAPITALISED.finditer(question)][1:]
    names = [w for w in words if w[:1].isupper() and tokenize(w)]
    return " ".join(names) or None


def asks_its_own_thing(question: str) -> bool:
    """A follow-up that says what it asks ("and when was it built?": built), not only which way ("and where?")."""
    return any(w not in _FOLLOW_UP_WORDS for w in tokenize(question))


def concat_query(question: str, history: list[Message]) -> str:
    """Without a capable model: a follow-up is searched together with what the question it follows is about.

    Only the earlier question's subject goes in when the follow-up asks its own thing: joined whole, the earlier
    question's own ask outweighs the follow-up's ("Who designed the Brightwater Observatory? and when was it
    built?" finds only the passage about the designer, and the model, shown nothing else, names the designer
    again). An elliptic follow-up ("and where?") needs the earlier question whole, its verb included; one that
    names its own subject ("And in what year did Tesla die?") is searched alone."""
    earlier = followed_question(question, history)
    if not earlier or (names_its_subject(question) and subject_of(question)):  # "And when did Tesla die?"
        return question
    subject = subject_of(earlier)
    return f"{subject} {question}" if subject and asks_its_own_thing(question) else f"{earlier} {question}"


def with_earlier_question(question: str, history: list[Message]) -> str:
    """For a model that reads the whole text (the agent): a follow-up, with the question it follows beside it."""
    earlier = followed_question(question, history)
    return f"{question}\n(This follows the earlier question: {earlier})" if earlier else question


def model_query(question: str, history: list[Message], llm: LLM) -> str:
    """Ask the model for a standalone query; fall back to ``concat_query`` if it fails or rambles."""
    if not previous_questions(history):
        return question
    turns = "\n".join(f"{m['role']}: {m['content'][:500]}" for m in history[-6:])
    prompt = load("rewrite").format(history=turns, question=question)
    try:
        rewritten = llm.complete([{"role": "user", "content": prompt}], max_tokens=48, temperature=0.0)
    except LLMError:
        return concat_query(question, history)
    rewritten = rewritten.strip().splitlines()[0].strip().strip('"') if rewritten.strip() else ""
    if not rewritten or len(rewritten) > 4 * len(question) + 200:
        return concat_query(question, history)
    return rewritten


def standalone_query(question: str, history: list[Message], llm: LLM, mode: str) -> str:
    """``mode``: "model" asks the LLM, "concat" uses the heuristic, "auto" picks by backend capability."""
    if mode == "auto":
        mode = "model" if llm.rewrites_queries else "concat"
    return model_query(question, history, llm) if mode == "model" else concat_query(question, history)
