"""What the model sees each turn, the grammar it must follow, and how its turn is read back.

Every turn is one JSON object, constrained by a grammar derived from the tools'
input schemas: `{"tool": NAME, "arguments": {...}}` (one alternative per tool, its
arguments object being that tool's `inputSchema`) or `{"answer": TEXT}`. A base
model gets a plain completion prompt with worked examples; a model whose GGUF has
a chat template gets the same content as chat messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llama_agent.runtime.tools.metadata import ToolExample
from llama_agent.runtime.tools.schema import S64_MAX, S64_MIN
from llama_agent.services.agent.history import PastTurn
from llama_agent.services.tools.registry import Tool

INSTRUCTIONS = (
    "You are an assistant that uses tools. Each turn, reply with one JSON object: "
    '{"tool": NAME, "arguments": {...}} to call a tool, or {"answer": TEXT} to give the final '
    "answer.\n"
    "Call a tool whenever the request needs one: to calculate, to read, list, search or write "
    "files, to get the date or time, to echo or print text. Answer directly, without a tool, "
    "only when no tool is needed. After a result, answer by quoting it; call another tool only "
    "when the request asks for one more step. Never call the same tool twice with the same "
    "arguments."
)
# When no tool is on offer (toolChoice "none", or the step budget is spent).
ANSWER_ONLY_INSTRUCTIONS = 'You are a helpful assistant. Reply with one JSON object: {"answer": TEXT}.'
# A result of this run's calls beyond this many characters is cut before it reaches the prompt
# (and cut further when the prompt would not fit the context: budget.py).
OBSERVATION_LIMIT = 4000
# A result of an earlier request in the conversation, shown in its history: what most answers
# quote fits; the rest is marked as cut.
HISTORY_RESULT_LIMIT = 600


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
class ExampleStep:
    tool: str
    arguments: dict[str, Any]
    result: str
    is_error: bool = False


@dataclass(frozen=True)
class Example:
    """A worked example: a request, the calls it takes (none for a direct answer), the answer."""

    user: str
    steps: tuple[ExampleStep, ...]
    answer: str


# Shown in every prompt, so the model sees that a request may need no tool at all.
DIRECT_ANSWER = Example(
    "What is the largest planet in the solar system?",
    (),
    "Jupiter is the largest planet in the solar system.",
)
# With no tool on offer: answers in the JSON the grammar asks for, short and to the point.
ANSWER_EXAMPLES = (
    DIRECT_ANSWER,
    Example("Good morning!", (), "Good morning! How can I help you today?"),
    Example("How many legs does a spider have?", (), "A spider has eight legs."),
)
# Placeholder values for tools that ship no example of their own.
_PLACEHOLDERS = {"string": "example", "integer": 1, "number": 1.5, "boolean": True}


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
                # Never empty: an answer says something, if only that nothing was found.
                "properties": {"answer": {"type": "string", "minLength": 1}},
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


def instructions(tools: Sequence[Tool]) -> str:
    return INSTRUCTIONS if tools else ANSWER_ONLY_INSTRUCTIONS


def describe_tools(tools: Sequence[Tool]) -> str:
    if not tools:
        return "Tools: none. Answer directly."
    lines = ["Tools:"]
    for tool in tools:
        schema = tool.input_schema
        params = [
            _describe_param(name, prop, name in schema["required"])
            for name, prop in schema["properties"].items()
        ]
        arguments = "; ".join(params) if params else "none"
        description = tool.loaded.metadata.description.strip().rstrip(".")
        lines.append(f"- {tool.name}: {description}. Arguments: {arguments.rstrip('.')}.")
    return "\n".join(lines)


def _describe_param(name: str, prop: dict[str, Any], required: bool) -> str:
    """`name (type, required|optional[, constraints])[: description]`, constraints in words the
    model can follow: a range, the choices, the default."""
    facts = [prop["type"], "required" if required else "optional"]
    low, high = prop.get("minimum"), prop.get("maximum")
    if (low is not None or high is not None) and not _is_s64_range(low, high):
        facts.append(_range_text(low, high))
    if "enum" in prop:
        facts.append("one of " + ", ".join(json.dumps(choice, ensure_ascii=False) for choice in prop["enum"]))
    if "default" in prop:
        facts.append(f"default {json.dumps(prop['default'], ensure_ascii=False)}")
    description = f": {prop['description'].strip().rstrip('.')}" if prop.get("description") else ""
    return f"{name} ({', '.join(facts)}){description}"


def _is_s64_range(low: Any, high: Any) -> bool:
    return bool(low == S64_MIN and high == S64_MAX)


def _range_text(low: Any, high: Any) -> str:
    if low is not None and high is not None and low != S64_MIN and high != S64_MAX:
        return f"{_number(low)} to {_number(high)}"
    if low is not None and low != S64_MIN:
        return f"at least {_number(low)}"
    return f"at most {_number(high)}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def examples_for(
    tools: Sequence[Tool], focus: Tool | None = None, request: str = "", after: Tool | None = None
) -> list[Example]:
    """Worked examples, a direct answer first: a small model copies the example nearest to the
    request, and a tool's answer quoting its result is the one to copy ("The largest planet in the
    solar system is 125" was what copying the direct answer gave).

    With a `focus` tool (the one the router chose, or the one the request forces): every example
    it ships, the one most like `request` nearest to it (a small model copies the nearest
    example: better its shape than another's values). When the focus tool's call comes `after`
    another tool's, also an example of it taking that tool's result. Without a focus: one
    example per offered tool, and a two-step example of the last two."""
    fixed, by_request = _example_blocks(tools, focus, request, after)
    return fixed + by_request


def _example_blocks(
    tools: Sequence[Tool], focus: Tool | None, request: str, after: Tool | None = None
) -> tuple[list[Example], list[Example]]:
    """The examples that depend only on the tools, then those that depend on the request."""
    if not tools:
        return list(ANSWER_EXAMPLES), []
    shipping = [tool for tool in tools if tool.loaded.metadata.examples]
    if focus is not None:
        # No two-step example of other tools: the model copied its values into the focus tool's call.
        own = [_example(focus, shipped) for shipped in focus.loaded.metadata.examples]
        own.sort(key=lambda example: _overlap(example.user, request))
        fed = _fed_example(after, focus) if after is not None else None
        return [DIRECT_ANSWER], [*(own or [_generic_example(focus)]), *([fed] if fed else [])]
    return [DIRECT_ANSWER, *(_tool_example(tool) for tool in tools), *_two_step_example(shipping[-2:])], []


def _fed_example(first_tool: Tool, then: Tool) -> Example | None:
    """`first_tool`'s first example, then `then`'s first example called on its result: shows that
    the second call takes the value the first one returned, not one from the request. Only for
    a tool whose example output shows the argument (echo, print), where swapping the value
    keeps the example true."""
    if not first_tool.loaded.metadata.examples or not then.loaded.metadata.examples:
        return None
    first = _tool_example(first_tool)
    shipped = then.loaded.metadata.examples[0]
    shown = [
        (name, value)
        for name, value in shipped.arguments
        if isinstance(value, str) and value and value in shipped.result and value in shipped.request
    ]
    if not shown:
        return None
    name, value = shown[-1]
    fed = first.steps[-1].result
    request = shipped.request.replace(f"'{value}'", value).replace(value, "the result")
    step = ExampleStep(then.name, {**dict(shipped.arguments), name: fed}, shipped.result.replace(value, fed))
    user = f"{first.user.rstrip('.?!')}, then {request[:1].lower()}{request[1:]}"
    return Example(user, (*first.steps, step), shipped.answer.replace(value, fed))


def _two_step_example(pair: Sequence[Tool]) -> list[Example]:
    """From the tools' last examples: another example than the first, shown on its own, where a
    tool ships two, and not always the first tools' (a small model copies what it saw)."""
    if len(pair) != 2:
        return []
    first, second = (_tool_example(tool, last=True) for tool in pair)
    return [_two_steps(first, second)]


def _overlap(text: str, request: str) -> int:
    return len(set(_words(text)) & set(_words(request)))


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _tool_example(tool: Tool, last: bool = False) -> Example:
    shipped = tool.loaded.metadata.examples
    if shipped:
        return _example(tool, shipped[-1] if last else shipped[0])
    return _generic_example(tool)


def _example(tool: Tool, shipped: ToolExample) -> Example:
    step = ExampleStep(tool.name, dict(shipped.arguments), shipped.result)
    return Example(shipped.request, (step,), shipped.answer)


def _generic_example(tool: Tool) -> Example:
    properties = tool.input_schema["properties"]
    arguments = {
        name: prop.get("default", _PLACEHOLDERS[prop["type"]])
        for name, prop in properties.items()
        if name in tool.input_schema["required"]
    }
    subject = next((value for value in arguments.values() if isinstance(value, str)), "example")
    step = ExampleStep(tool.name, arguments, f"({tool.name} output for {subject})")
    return Example(
        f"Please use {tool.name} on '{subject}'.", (step,), f"The result is: ({tool.name} output)."
    )


def _two_steps(first: Example, second: Example) -> Example:
    request = f"{first.user.rstrip('.?!')}, and then: {second.user[0].lower()}{second.user[1:]}"
    return Example(request, first.steps + second.steps, f"{first.answer} {second.answer}")


def call_text(tool: str, arguments: dict[str, Any]) -> str:
    return json.dumps({"tool": tool, "arguments": arguments}, ensure_ascii=False)


def answer_text(answer: str) -> str:
    return json.dumps({"answer": answer}, ensure_ascii=False)


def observation_text(observation: str, is_error: bool, limit: int = OBSERVATION_LIMIT) -> str:
    """What the model sees of a tool's output: a JSON string, so that quotes, backslashes and
    newlines in it are already written the way the model's own JSON answer must write them.
    Past `limit` characters it is cut, and says how much is left out."""
    return f"{'Error' if is_error else 'Result'}: {json.dumps(cut(observation, limit), ensure_ascii=False)}"


def cut(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters and a marker saying how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} [cut: {len(text) - limit} more characters]"


def history_examples(turns: Sequence[PastTurn]) -> list[Example]:
    """The conversation's earlier turns in the form of worked examples: each request, its calls
    and their results, its answer."""
    return [
        Example(
            turn.request,
            tuple(ExampleStep(s.tool, s.arguments, s.result, s.is_error) for s in turn.steps),
            turn.answer,
        )
        for turn in turns
    ]


def history_text(turns: Sequence[PastTurn], result_limit: int = HISTORY_RESULT_LIMIT) -> str:
    """The conversation so far, as a completion prompt shows it between the examples and the
    request."""
    return "".join(f"{_example_text(example, result_limit)}\n" for example in history_examples(turns))


@dataclass(frozen=True)
class PromptContext:
    """What a turn's prompt shows besides the tools, the request and this run's calls: the
    conversation's earlier turns, and how much of each result (this run's, and earlier ones')."""

    history: Sequence[PastTurn] = ()
    result_limit: int = OBSERVATION_LIMIT
    history_result_limit: int = HISTORY_RESULT_LIMIT


def completion_prompt(
    tools: Sequence[Tool],
    user_prompt: str,
    transcript: Sequence[Exchange],
    focus: Tool | None = None,
    after: Tool | None = None,
    context: PromptContext | None = None,
) -> str:
    """A few-shot completion prompt for base models; it ends where the model's turn begins. The
    conversation's earlier turns (`context.history`) come between the examples and the request, so
    that a follow-up's prompt begins with the one before it."""
    context = context or PromptContext()
    lines = [f"User: {user_prompt}"]
    for exchange in transcript:
        lines += [
            f"Assistant: {exchange.turn}",
            observation_text(exchange.observation, exchange.is_error, context.result_limit),
        ]
    start = completion_start(tools, user_prompt, focus, after)
    history = history_text(context.history, context.history_result_limit)
    return start + history + "\n".join(lines) + "\nAssistant: "


def completion_start(
    tools: Sequence[Tool], user_prompt: str, focus: Tool | None = None, after: Tool | None = None
) -> str:
    """Everything before the request: `completion_prefix`, then the examples. The request decides
    only the examples' order, so most runs with these tools and this focus share all of it: worth
    keeping evaluated too (on disk, one state a distinct start)."""
    _, by_request = _example_blocks(tools, focus, user_prompt, after)
    return completion_prefix(tools, focus) + "".join(f"{_example_text(example)}\n" for example in by_request)


def completion_prefix(tools: Sequence[Tool], focus: Tool | None = None) -> str:
    """The start of every completion prompt for these tools and focus, whatever the request: worth
    keeping evaluated (llama_agent.runtime.models.prompt_states)."""
    fixed, _ = _example_blocks(tools, focus, "")
    parts = [
        instructions(tools),
        "",
        describe_tools(tools),
        "",
        *(_example_text(example) for example in fixed),
    ]
    return "\n".join(parts) + "\n"


def _example_text(example: Example, result_limit: int = OBSERVATION_LIMIT) -> str:
    lines = [f"User: {example.user}"]
    for step in example.steps:
        lines += [
            f"Assistant: {call_text(step.tool, step.arguments)}",
            observation_text(step.result, step.is_error, result_limit),
        ]
    lines += [f"Assistant: {answer_text(example.answer)}", ""]
    return "\n".join(lines)


def chat_messages(
    tools: Sequence[Tool],
    user_prompt: str,
    transcript: Sequence[Exchange],
    focus: Tool | None = None,
    after: Tool | None = None,
    context: PromptContext | None = None,
) -> list[dict[str, str]]:
    """The same conversation as chat messages: the examples, the conversation's earlier turns,
    the request and this run's calls; instructions go in the first user message, since not every
    template accepts a system role."""
    context = context or PromptContext()
    messages: list[dict[str, str]] = []
    preamble = f"{instructions(tools)}\n\n{describe_tools(tools)}\n\n"
    shown = [(example, OBSERVATION_LIMIT) for example in examples_for(tools, focus, user_prompt, after)]
    shown += [(example, context.history_result_limit) for example in history_examples(context.history)]
    for example, limit in shown:
        messages.append({"role": "user", "content": preamble + example.user})
        for step in example.steps:
            messages += [
                {"role": "assistant", "content": call_text(step.tool, step.arguments)},
                {"role": "user", "content": observation_text(step.result, step.is_error, limit)},
            ]
        messages.append({"role": "assistant", "content": answer_text(example.answer)})
        preamble = ""
    messages.append({"role": "user", "content": preamble + user_prompt})
    for exchange in transcript:
        observation = observation_text(exchange.observation, exchange.is_error, context.result_limit)
        messages += [
            {"role": "assistant", "content": exchange.turn},
            {"role": "user", "content": observation},
        ]
    return messages
