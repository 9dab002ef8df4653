"""Keep the agent's transcript inside the model's context window, counting the model's own tokens."""

from __future__ import annotations

from dataclasses import dataclass

from rag.llm import LLM, Message

MIN_STEP_TOKENS = 32  # a turn with less room than this cannot hold a Thought and an Action
_MESSAGE_OVERHEAD = 8  # chat-template tokens around each message (ChatML uses 5)
_PROMPT_MARGIN = 16  # the assistant header that opens the reply, and rounding
_DROPPED = "(removed to fit the context window; the passages keep their numbers [n])"


@dataclass
class Turn:
    reply: str  # the assistant message
    observation: str
    short: str  # the observation when it must shrink


class Counter:
    """Token counts with the model's tokenizer, cached per text (vLLM counts over HTTP)."""

    def __init__(self, llm: LLM) -> None:
        self.llm = llm
        self.cache: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        if text not in self.cache:
            self.cache[text] = self.llm.count_tokens(text)
        return self.cache[text]

    def message(self, message: Message) -> int:
        return self(message["content"]) + _MESSAGE_OVERHEAD


def fit_transcript(system: str, question: str, turns: list[Turn], want: int, window: int,
                   count: Counter) -> tuple[list[Message], int] | None:
    """The chat for the next turn and the tokens the model may write, inside ``window``; None if even the
    barest transcript leaves no room for a turn.

    Shrinks in this order until ``want`` tokens fit: older observations to their short form (oldest first),
    older observations removed, the newest observation cut; then accepts any room of at least MIN_STEP_TOKENS.
    """
    observations = [t.observation for t in turns]

    def build() -> list[Message]:
        messages: list[Message] = [{"role": "system", "content": system},
                                   {"role": "user", "content": f"Question: {question}"}]
        for turn, observation in zip(turns, observations, strict=True):
            messages.append({"role": "assistant", "content": turn.reply})
            messages.append({"role": "user", "content": f"Observation: {observation}"})
        return messages

    limit = window - _PROMPT_MARGIN

    def room() -> int:
        return limit - sum(count.message(m) for m in build())

    if room() >= want:
        return build(), want
    for shrink in (lambda i: turns[i].short, lambda i: _DROPPED):
        for i in range(len(turns) - 1):
            observations[i] = shrink(i)
            if room() >= want:
                return build(), want
    if turns:
        last = turns[-1].observation
        spare = room() + count(f"Observation: {last}")  # room without the newest observation's text
        words = last.split(" ")
        low, high = 0, len(words)
        while low < high:  # the longest prefix of the newest observation that leaves ``want`` tokens
            middle = (low + high + 1) // 2
            if spare - count("Observation: " + " ".join(words[:middle]) + " … (cut)") >= want:
                low = middle
            else:
                high = middle - 1
        observations[-1] = " ".join(words[:low]) + " … (cut to fit the context window)" if low else _DROPPED
    left = room()
    if left >= want:
        return build(), want
    if left >= MIN_STEP_TOKENS:
        return build(), left
    return None
