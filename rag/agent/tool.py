"""A tool is a typed Python function: its name, description and argument schema come from its signature and
docstring (Google style), as in huggingface/smolagents' ``@tool``::

    @tool
    def calculator(expression: str) -> ToolOutput:
        \"\"\"Evaluate one arithmetic expression.

        Args:
            expression: an arithmetic expression with numbers only
        \"\"\"

The model calls a tool with a ReAct ``Action Input``. A tool with one string argument takes it as plain text (or
as JSON); others take a JSON object of their arguments. Calling a ``Tool`` with the raw input parses and checks it
against the schema, runs the function and never raises: a bad input or a failing function becomes an observation
starting with ``Error:`` that the model can act on.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag.errors import ToolInputError  # defined with the project's other errors; imported from here too

if TYPE_CHECKING:
    from rag.answer.context import Passage

_JSON_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class ToolOutput:
    """What one tool call gave back."""

    text: str  # the observation, as the model reads it
    ok: bool = True  # False: an error the model should correct (the text says what went wrong)
    passages: tuple[Passage, ...] = ()  # search_documents: the passages returned, numbered for the whole run
    short: str | None = None  # a compact form of ``text`` used when the transcript must shrink to fit the window


@dataclass(frozen=True)
class Parameter:
    name: str
    type: type
    description: str
    required: bool

    @property
    def json_type(self) -> str:
        return _JSON_TYPES[self.type]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: tuple[Parameter, ...]
    function: Callable[..., ToolOutput | str] = field(repr=False)

    @classmethod
    def from_function(cls, function: Callable[..., ToolOutput | str], name: str | None = None) -> Tool:
        """Read the tool's schema off ``function``; raises ``TypeError`` if a parameter is untyped, of a type the
        schema cannot express, or not described under ``Args:`` in the docstring."""
        description, documented = parse_docstring(inspect.getdoc(function) or "")
        if not description:
            raise TypeError(f"tool {function.__name__}: its docstring must say what it does")
        hints = typing.get_type_hints(function)
        parameters = []
        for p in inspect.signature(function).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"tool {function.__name__}: *args and **kwargs cannot be described to a model")
            kind = hints.get(p.name)
            if kind not in _JSON_TYPES:
                raise TypeError(f"tool {function.__name__}: parameter {p.name!r} needs a type among str, int, "
                                f"float, bool (got {kind!r})")
            if p.name not in documented:
                raise TypeError(f"tool {function.__name__}: parameter {p.name!r} is not described under 'Args:'")
            parameters.append(Parameter(p.name, kind, documented[p.name], p.default is inspect.Parameter.empty))
        return cls(name or function.__name__, description, tuple(parameters), function)

    @property
    def schema(self) -> dict[str, object]:
        """The arguments as JSON Schema (what function-calling APIs expect)."""
        return {
            "type": "object",
            "properties": {p.name: {"type": p.json_type, "description": p.description} for p in self.parameters},
            "required": [p.name for p in self.parameters if p.required],
            "additionalProperties": False,
        }

    def describe(self) -> str:
        """One line for the system prompt: ``- name(argument: what it is): what the tool does``."""
        arguments = ", ".join(f"{p.name}: {p.description}" for p in self.parameters)
        return f"- {self.name}({arguments}): {self.description}"

    def parse(self, raw: str) -> dict[str, Any]:
        """The arguments from an Action Input: for a tool with one string argument, plain text or a JSON string;
        in every case a JSON object of the arguments. Code fences around the input are removed (models wrap
        programs in them). Raises ``ToolInputError``."""
        text = strip_fences(raw.strip())
        single = self.parameters[0] if len(self.parameters) == 1 and self.parameters[0].type is str else None
        value: object = None
        if text[:1] in ("{", '"'):
            try:
                value = json.loads(text)
            except ValueError:
                value = None  # not JSON after all: take the text as it is
        if single is not None and not isinstance(value, dict):
            text = value if isinstance(value, str) else text
            if not text.strip():
                raise ToolInputError(f"the Action Input is empty: {self.name} needs {single.description}")
            return {single.name: text.strip()}
        if not isinstance(value, dict):
            raise ToolInputError(f"{self.name} takes a JSON object: {self._example()}")
        return self._check(value)

    def _check(self, value: dict[str, Any]) -> dict[str, Any]:
        known = {p.name: p for p in self.parameters}
        unknown = set(value) - set(known)
        missing = [p.name for p in self.parameters if p.required and p.name not in value]
        if unknown or missing:
            if len(self.parameters) == 1:
                only = self.parameters[0].name
                raise ToolInputError(f"{self.name} takes one argument, {only!r}: write the {only} as plain text, "
                                     f'or as {{"{only}": "..."}}')
            raise ToolInputError(f"{self.name} takes {self._example()}")
        arguments: dict[str, Any] = {}
        for name, given in value.items():
            p = known[name]
            if p.type is float and isinstance(given, int) and not isinstance(given, bool):
                given = float(given)
            if not isinstance(given, p.type) or (p.type is int and isinstance(given, bool)):
                raise ToolInputError(f"{self.name}: {name!r} must be a {p.json_type}")
            if p.type is str:
                given = given.strip()
                if not given and p.required:
                    raise ToolInputError(f"the Action Input is empty: {self.name} needs {p.description}")
            arguments[name] = given
        return arguments

    def _example(self) -> str:
        return "{" + ", ".join(f'"{p.name}": <{p.json_type}: {p.description}>' for p in self.parameters) + "}"

    def __call__(self, raw: str) -> ToolOutput:
        try:
            arguments = self.parse(raw)
        except ToolInputError as exc:
            return ToolOutput(f"Error: {exc}", ok=False)
        try:
            output = self.function(**arguments)
        except Exception as exc:  # noqa: BLE001 - a tool failure is an observation, never a crash of the loop
            return ToolOutput(f"Error: {self.name} failed: {exc}", ok=False)
        return output if isinstance(output, ToolOutput) else ToolOutput(str(output))


def tool(function: Callable[..., ToolOutput | str]) -> Tool:
    """Decorator: a typed, documented function as a ``Tool``."""
    return Tool.from_function(function)


_ARG_LINE = re.compile(r"^(\w+)(?:\s*\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {argument: description}) from a Google-style docstring; the description is the text before
    ``Args:`` on one line, each argument's description may continue on more-indented lines."""
    head, _, args = doc.partition("\nArgs:")
    description = " ".join(head.split())
    documented: dict[str, str] = {}
    current: str | None = None
    documented_indent = 0
    for line in args.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not line.startswith((" ", "\t")):  # another section (Returns:, ...) ends the arguments
            break
        match = _ARG_LINE.match(stripped)
        if match and (current is None or len(line) - len(line.lstrip()) <= documented_indent):
            current = match.group(1)
            documented_indent = len(line) - len(line.lstrip())
            documented[current] = match.group(2).strip()
        elif current is not None:
            documented[current] = f"{documented[current]} {stripped}".strip()
    return description, documented


_FENCE = re.compile(r"^```[\w+-]*[ \t]*\n(.*?)\n?```\s*$", re.DOTALL)


def strip_fences(text: str) -> str:
    """``code`` from a Markdown block "```python\\ncode\\n```" (or the text unchanged)."""
    match = _FENCE.match(text.strip())
    return match.group(1) if match else text
