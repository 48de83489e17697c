"""What the model sees each turn, the grammar it must follow, and how its turn is read back.

Every turn is one JSON object, constrained by a grammar derived from the tools'
input schemas: `{"tool": NAME, "arguments": {...}}` (one alternative per tool, its
arguments object being that tool's `inputSchema`) or `{"answer": TEXT}`. A base
model gets a plain completion prompt with worked examples; a model whose GGUF has
a chat template gets the same content as chat messages.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daemon.services.toolbox import Tool

INSTRUCTIONS = (
    "You are an assistant that uses tools. Each turn, reply with one JSON object: "
    '{"tool": NAME, "arguments": {...}} to call a tool, or {"answer": TEXT} to give the '
    "final answer after using the tools."
)
# Tool output beyond this many characters is cut before it reaches the prompt.
OBSERVATION_LIMIT = 4000


@dataclass(frozen=True)
class ToolCall:
    tool: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class FinalAnswer:
    text: str


@dataclass(frozen=True)
class Exchange:
    """One step of the transcript: the model's turn, verbatim, and what the tool said."""

    turn: str
    observation: str
    is_error: bool


@dataclass(frozen=True)
class Example:
    user: str
    tool: str
    arguments: dict[str, Any]
    result: str
    answer: str


# Worked examples for the bundled tools; tools without one get a generic example.
EXAMPLES = {
    "echo": Example(
        "Please echo back 'Hello there, world'",
        "echo",
        {"value": "Hello there, world"},
        "Hello there, world",
        "Hello there, world",
    ),
    "print": Example(
        "Print the message 'build finished'",
        "print",
        {"message": "build finished"},
        "build finished",
        "I printed 'build finished'.",
    ),
}
# Two generic examples, not one: with a single one the small default model often answers
# instead of calling the tool (measured on the embedded model, temperature 0).
_PLACEHOLDERS: tuple[dict[str, Any], ...] = (
    {"string": "example", "integer": 1, "number": 1.5, "boolean": True},
    {"string": "some text", "integer": 2, "number": 0.5, "boolean": False},
)


class TurnError(ValueError):
    """A model turn that is not a valid call or answer (only possible if it was cut short)."""


def turn_schema(tools: Sequence[Tool], allow_answer: bool = True) -> dict[str, Any]:
    """One alternative per tool, `{"tool": NAME, "arguments": <its inputSchema>}`, and the answer."""
    alternatives: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"tool": {"const": tool.name}, "arguments": tool.input_schema},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    if allow_answer or not alternatives:
        alternatives.append(
            {
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "required": ["answer"],
                "additionalProperties": False,
            }
        )
    return alternatives[0] if len(alternatives) == 1 else {"oneOf": alternatives}


def parse_turn(text: str) -> ToolCall | FinalAnswer:
    try:
        turn = json.loads(text)
    except ValueError as error:
        raise TurnError(f"the model's turn is not complete JSON: {text!r}") from error
    if isinstance(turn, dict) and isinstance(turn.get("answer"), str):
        return FinalAnswer(turn["answer"])
    if (
        isinstance(turn, dict)
        and isinstance(turn.get("tool"), str)
        and isinstance(turn.get("arguments"), dict)
    ):
        return ToolCall(turn["tool"], turn["arguments"])
    raise TurnError(f"the model's turn is neither a tool call nor an answer: {text!r}")


def describe_tools(tools: Sequence[Tool]) -> str:
    if not tools:
        return "Tools: none. Answer directly."
    lines = ["Tools:"]
    for tool in tools:
        schema = tool.input_schema
        params = [
            f"{name} ({prop['type']}, {'required' if name in schema['required'] else 'optional'})"
            + (f": {prop['description']}" if prop.get("description") else "")
            for name, prop in schema["properties"].items()
        ]
        arguments = "; ".join(params) if params else "none"
        description = tool.loaded.metadata.description.strip().rstrip(".")
        lines.append(f"- {tool.name}: {description}. Arguments: {arguments.rstrip('.')}.")
    return "\n".join(lines)


def examples_for(tools: Sequence[Tool]) -> list[Example]:
    """Worked examples for the offered tools: at least two, since one is too few for a small model."""
    known = [EXAMPLES[tool.name] for tool in tools if tool.name in EXAMPLES]
    if len(known) >= 2 or not tools:
        return known
    return known + _generic_examples(tools[0])


def _generic_examples(tool: Tool) -> list[Example]:
    required = [(name, prop["type"]) for name, prop in tool.input_schema["properties"].items()]
    required = [(name, kind) for name, kind in required if name in tool.input_schema["required"]]
    examples = []
    for values in _PLACEHOLDERS:
        arguments = {name: values[kind] for name, kind in required}
        subject = next((value for value in arguments.values() if isinstance(value, str)), values["string"])
        examples.append(
            Example(f"Please use {tool.name} on '{subject}'", tool.name, arguments, "(the output)", "Done.")
        )
    return examples


def call_text(tool: str, arguments: dict[str, Any]) -> str:
    return json.dumps({"tool": tool, "arguments": arguments}, ensure_ascii=False)


def answer_text(answer: str) -> str:
    return json.dumps({"answer": answer}, ensure_ascii=False)


def observation_text(observation: str, is_error: bool) -> str:
    if len(observation) > OBSERVATION_LIMIT:
        observation = observation[:OBSERVATION_LIMIT] + " [cut]"
    return f"{'Error' if is_error else 'Result'}: {observation}"


def completion_prompt(tools: Sequence[Tool], user_prompt: str, transcript: Sequence[Exchange]) -> str:
    """A few-shot completion prompt for base models; it ends where the model's turn begins."""
    parts = [INSTRUCTIONS, "", describe_tools(tools), ""]
    for example in examples_for(tools):
        parts += [
            f"User: {example.user}",
            f"Assistant: {call_text(example.tool, example.arguments)}",
            observation_text(example.result, False),
            f"Assistant: {answer_text(example.answer)}",
            "",
        ]
    parts.append(f"User: {user_prompt}")
    for exchange in transcript:
        parts += [f"Assistant: {exchange.turn}", observation_text(exchange.observation, exchange.is_error)]
    return "\n".join(parts) + "\nAssistant: "


def chat_messages(
    tools: Sequence[Tool], user_prompt: str, transcript: Sequence[Exchange]
) -> list[dict[str, str]]:
    """The same conversation as chat messages; instructions go in the first user message,
    since not every template accepts a system role."""
    messages: list[dict[str, str]] = []
    preamble = f"{INSTRUCTIONS}\n\n{describe_tools(tools)}\n\n"
    for example in examples_for(tools):
        messages += [
            {"role": "user", "content": preamble + example.user},
            {"role": "assistant", "content": call_text(example.tool, example.arguments)},
            {"role": "user", "content": observation_text(example.result, False)},
            {"role": "assistant", "content": answer_text(example.answer)},
        ]
        preamble = ""
    messages.append({"role": "user", "content": preamble + user_prompt})
    for exchange in transcript:
        messages += [
            {"role": "assistant", "content": exchange.turn},
            {"role": "user", "content": observation_text(exchange.observation, exchange.is_error)},
        ]
    return messages
