"""Typed tools: the schema an agent sees comes from the function's signature and docstring, and a bad input is an
observation, not a crash. And LLM backends come from a registry, so a new one is one new file."""

from __future__ import annotations

import pytest

from rag.agent.tool import Tool, ToolOutput, parse_docstring, tool
from rag.llm import LLM, LLMError, backend_names, get_llm
from rag.settings import Settings


@tool
def convert(amount: float, unit: str, exact: bool = False) -> str:
    """Convert an amount between units.

    Args:
        amount: how much
        unit (str): the unit to convert to,
            written out in full
        exact: keep every digit
    """
    return f"{amount} {unit}{' exactly' if exact else ''}"


def test_schema_and_description_come_from_the_signature_and_docstring() -> None:
    assert isinstance(convert, Tool) and convert.name == "convert"
    assert convert.description == "Convert an amount between units."
    assert convert.schema == {
        "type": "object",
        "properties": {
            "amount": {"type": "number", "description": "how much"},
            "unit": {"type": "string", "description": "the unit to convert to, written out in full"},
            "exact": {"type": "boolean", "description": "keep every digit"},
        },
        "required": ["amount", "unit"],
        "additionalProperties": False,
    }
    assert convert.describe().startswith("- convert(amount: how much, unit: the unit to convert to")


def test_several_arguments_take_a_json_object_checked_against_the_schema() -> None:
    assert convert('{"amount": 3, "unit": "metres"}') == ToolOutput("3.0 metres")
    assert convert('{"amount": 3, "unit": "metres", "exact": true}').text == "3.0 metres exactly"
    for bad, reason in [('{"amount": "three", "unit": "m"}', "'amount' must be a number"),
                        ('{"unit": "m"}', "takes {"), ('{"amount": 1, "unit": "m", "x": 1}', "takes {"),
                        ("3 metres", "takes a JSON object")]:
        output = convert(bad)
        assert not output.ok and output.text.startswith("Error:") and reason in output.text, (bad, output.text)


def test_a_failing_function_is_an_observation() -> None:
    @tool
    def fragile(text: str) -> ToolOutput:
        """Always fails.

        Args:
            text: anything
        """
        raise RuntimeError("disk on fire")

    assert fragile("x") == ToolOutput("Error: fragile failed: disk on fire", ok=False)
    assert fragile('"quoted"').ok is False  # a JSON string is the argument itself


def test_untyped_or_undocumented_functions_are_refused_at_definition() -> None:
    def untyped(text) -> str:  # noqa: ANN001
        """Does things.

        Args:
            text: anything
        """
        return text

    def undocumented(text: str) -> str:
        """Does things."""
        return text

    with pytest.raises(TypeError, match="needs a type"):
        tool(untyped)
    with pytest.raises(TypeError, match="not described"):
        tool(undocumented)


def test_docstring_sections_after_args_are_not_arguments() -> None:
    description, args = parse_docstring("Adds.\n\nArgs:\n    a: first\n    b: second\n\nReturns:\n    c: the sum")
    assert description == "Adds." and args == {"a": "first", "b": "second"}


def test_a_registered_backend_is_chosen_by_name(echo_backend: type[LLM]) -> None:
    assert backend_names()[:2] == ["embedded", "openai"] and "echo" in backend_names()
    llm = get_llm(Settings(llm="echo", temperature=0.3))
    assert isinstance(llm, echo_backend) and llm.backend == "echo" and llm.temperature == 0.3
    assert llm.complete([{"role": "user", "content": "hello"}]) == "hello"


def test_an_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(LLMError, match="one of: embedded, openai"):
        get_llm(Settings(llm="nonesuch"))


def test_each_backend_reads_its_model_from_the_setting_that_names_it(echo_backend: type[LLM]) -> None:
    # The sidebar builds a backend from (backend, model) through chat_model_field; chat_model reads it back.
    for backend in backend_names():
        chosen = Settings().model_copy(update={"llm": backend, Settings.chat_model_field(backend): "some-model"})
        assert chosen.chat_model == "some-model"
    assert Settings.chat_model_field("echo") == Settings.chat_model_field("openai") == "llm_model"
    assert Settings(llm="embedded", embedded_model="smollm2-135m", llm_model="other").chat_model == "smollm2-135m"
