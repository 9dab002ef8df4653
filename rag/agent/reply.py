"""One model turn of the ReAct format, parsed strictly: an action with its input, a final answer, or an error
that tells the model how to fix its reply. Never raises."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.answer.thinking import strip_thinking


@dataclass(frozen=True)
class Reply:
    """A model turn, parsed: an action, a final answer, or an ``error`` telling the model how to fix it."""

    thought: str = ""
    action: str | None = None
    input: str | None = None
    final: str | None = None
    error: str | None = None


_LABEL = re.compile(
    r"^[ \t]*[*_]{0,2}(thought|action input|action|final answer|observation|question)[*_]{0,2}[ \t]*:[*_]{0,2}[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_FORMAT_HINT = (
    "Reply with 'Thought: ...', then 'Action: <tool name>' and 'Action Input: <input>' on their own lines to use a "
    "tool, or with 'Final Answer: ...' when you know the answer."
)


def clean_reply(text: str) -> str:
    """The reply without a reasoning model's <think> block, cut where the model starts writing an Observation."""
    text = strip_thinking(text)
    match = re.search(r"^[ \t]*[*_]{0,2}observation[*_]{0,2}[ \t]*:", text, re.IGNORECASE | re.MULTILINE)
    return (text[: match.start()] if match else text).strip()


def parse_reply(text: str) -> Reply:
    """Parse one turn strictly; never raises. Expects a ``clean_reply`` text."""
    labels = [(m.group(1).lower(), m.start(), m.end()) for m in _LABEL.finditer(text)]
    # A hallucinated next "Question:" ends the turn (the model started a new example).
    for i, (name, start, _) in enumerate(labels):
        if name == "question" and i > 0:
            text, labels = text[:start], labels[:i]
            break
    labels = [label for label in labels if label[0] != "question"]

    def content(i: int) -> str:
        end = labels[i + 1][1] if i + 1 < len(labels) else len(text)
        return text[labels[i][2] : end].strip()

    names = [name for name, _, _ in labels]
    thought = next((content(i) for i, n in enumerate(names) if n == "thought"), "")
    if not thought:
        thought = (text[: labels[0][1]] if labels else "").strip()
    n_actions, n_finals = names.count("action"), names.count("final answer")
    if n_actions == 0 and n_finals == 0:
        if not text.strip():
            return Reply(error=f"Invalid format: your reply was empty. {_FORMAT_HINT}")
        return Reply(thought or text.strip(),
                     error=f"Invalid format: your reply has no 'Action:' line and no 'Final Answer:' line. "
                           f"{_FORMAT_HINT}")
    if n_actions and n_finals:
        return Reply(thought, error="Invalid format: you wrote an Action and a Final Answer in the same reply. "
                                    "Write one Action and stop; its Observation comes next. Give the Final "
                                    "Answer only once you have the facts.")
    if n_finals:
        if n_finals > 1:
            return Reply(thought, error="Invalid format: write 'Final Answer:' only once.")
        final = content(names.index("final answer"))
        if not final:
            return Reply(thought, error="Invalid format: the Final Answer is empty. Write the answer after "
                                        "'Final Answer:'.")
        return Reply(thought, final=final)
    if n_actions > 1:
        return Reply(thought, error="Invalid format: write one Action per reply, then stop and wait for its "
                                    "Observation.")
    i = names.index("action")
    action = content(i).splitlines()[0].strip().strip("`'\"").rstrip(".").strip() if content(i) else ""
    if not action:
        return Reply(thought, error="Invalid format: 'Action:' must name a tool. " + _FORMAT_HINT)
    if "(" in action or " " in action:
        return Reply(thought, action=action,
                     error=f"Invalid format: 'Action:' must be only the tool name (for example 'Action: "
                           f"calculator'), and the input goes on the next line as 'Action Input: ...'. You wrote "
                           f"'Action: {action}'.")
    if "action input" not in names or names.index("action input") != i + 1:
        return Reply(thought, action=action,
                     error=f"Invalid format: 'Action: {action}' must be followed by a line 'Action Input: ...' "
                           f"with the tool's input.")
    return Reply(thought, action=action, input=content(i + 1))
