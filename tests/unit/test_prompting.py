"""Prompts, turn grammars and turn parsing for the agent loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from daemon.runtime.metadata import ParamType, ToolMetadata, ToolParam
from daemon.runtime.schema import input_schema
from daemon.services.prompting import (
    OBSERVATION_LIMIT,
    Exchange,
    FinalAnswer,
    ToolCall,
    TurnError,
    chat_messages,
    completion_prompt,
    parse_turn,
    turn_schema,
)
from daemon.services.toolbox import Tool


def make_tool(name: str, *params: ToolParam, description: str = "does things") -> Tool:
    metadata = ToolMetadata(name, description, "1.0.0", params)
    loaded = type("Loaded", (), {"metadata": metadata, "path": Path(f"{name}.wasm")})()
    return Tool(loaded, input_schema(metadata))


ECHO = make_tool("echo", ToolParam("value", "The text.", ParamType.STRING, True), description="Echoes.")
COUNT = make_tool(
    "count",
    ToolParam("n", "How many.", ParamType.INTEGER, True),
    ToolParam("loud", "", ParamType.BOOLEAN, False),
)


def test_turn_schema_has_one_alternative_per_tool_and_one_for_the_answer() -> None:
    schema = turn_schema([ECHO, COUNT])
    validator = Draft202012Validator(schema)
    assert len(schema["oneOf"]) == 3
    assert validator.is_valid({"tool": "echo", "arguments": {"value": "a b c"}})
    assert validator.is_valid({"tool": "count", "arguments": {"n": 3, "loud": True}})
    assert validator.is_valid({"answer": "done"})
    assert not validator.is_valid({"tool": "echo", "arguments": {"n": 3}})
    assert not validator.is_valid({"tool": "nope", "arguments": {}})
    assert not validator.is_valid({"answer": "x", "tool": "echo"})
    # Key order matters to the grammar: the tool name comes first.
    assert list(schema["oneOf"][0]["properties"]) == ["tool", "arguments"]


def test_without_tools_only_an_answer_is_possible() -> None:
    schema = turn_schema([])
    assert schema["required"] == ["answer"]
    assert not Draft202012Validator(schema).is_valid({"tool": "echo", "arguments": {}})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"tool": "echo", "arguments": {"value": "Something to echo"}}',
            ToolCall("echo", {"value": "Something to echo"}),
        ),
        ('{"answer": "it is done"} ', FinalAnswer("it is done")),
    ],
)
def test_turns_parse(text: str, expected: ToolCall | FinalAnswer) -> None:
    assert parse_turn(text) == expected


@pytest.mark.parametrize("text", ['{"tool": "echo", "argum', "[1, 2]", '{"neither": 1}'])
def test_incomplete_or_odd_turns_are_errors(text: str) -> None:
    with pytest.raises(TurnError):
        parse_turn(text)


def test_completion_prompt_lists_tools_shows_examples_and_ends_at_the_assistant_turn() -> None:
    transcript = [Exchange('{"tool": "echo", "arguments": {"value": "x"}}', "x", False)]
    prompt = completion_prompt([ECHO, COUNT], "Please echo back 'x'", transcript)
    assert "- echo: Echoes. Arguments: value (string, required): The text." in prompt
    assert (
        "- count: does things. Arguments: n (integer, required): How many.; loud (boolean, optional)."
        in prompt
    )
    assert 'Assistant: {"tool": "echo", "arguments": {"value": "Hello there, world"}}' in prompt
    assert prompt.endswith(
        "User: Please echo back 'x'\n"
        'Assistant: {"tool": "echo", "arguments": {"value": "x"}}\n'
        "Result: x\n"
        "Assistant: "
    )


def test_tools_without_a_worked_example_get_a_generic_one() -> None:
    prompt = completion_prompt([COUNT], "go", [])
    example = json.dumps({"tool": "count", "arguments": {"n": 1}})
    assert f"Assistant: {example}" in prompt


def test_errors_and_long_observations_are_marked() -> None:
    transcript = [Exchange("{}", "boom", True), Exchange("{}", "y" * (OBSERVATION_LIMIT + 10), False)]
    prompt = completion_prompt([ECHO], "go", transcript)
    assert "\nError: boom\n" in prompt
    assert "y" * OBSERVATION_LIMIT + " [cut]" in prompt
    assert "y" * (OBSERVATION_LIMIT + 1) not in prompt


def test_chat_messages_alternate_and_carry_the_instructions_once() -> None:
    transcript = [Exchange('{"tool": "echo", "arguments": {"value": "x"}}', "x", False)]
    messages = chat_messages([ECHO], "Please echo back 'x'", transcript)
    roles = [message["role"] for message in messages]
    examples = 3  # echo's own and two generic ones: never fewer than two
    assert roles == ["user", "assistant"] * (2 * examples + 1) + ["user"]
    assert sum("Tools:" in message["content"] for message in messages) == 1
    assert messages[-1]["content"] == "Result: x"
