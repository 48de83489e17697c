"""Prompts, turn grammars and turn parsing for the agent loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from llama_agent.runtime.tools.metadata import ParamType, ToolExample, ToolMetadata, ToolParam
from llama_agent.runtime.tools.schema import input_schema
from llama_agent.services.agent.prompting import (
    ANSWER_EXAMPLES,
    DIRECT_ANSWER,
    OBSERVATION_LIMIT,
    Exchange,
    FinalAnswer,
    ToolCall,
    TurnError,
    chat_messages,
    completion_prefix,
    completion_prompt,
    completion_start,
    examples_for,
    parse_turn,
    turn_schema,
)
from llama_agent.services.tools.registry import Tool


def make_tool(
    name: str, *params: ToolParam, description: str = "does things", examples: tuple[ToolExample, ...] = ()
) -> Tool:
    metadata = ToolMetadata(name, description, "1.0.0", params, examples)
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
        "- count: does things. Arguments: n (integer, required): How many; loud (boolean, optional)."
        in prompt
    )
    assert 'Assistant: {"tool": "echo", "arguments": {"value": "example"}}' in prompt  # generic
    # Every prompt shows that a request may need no tool.
    assert f"User: {DIRECT_ANSWER.user}\nAssistant: {json.dumps({'answer': DIRECT_ANSWER.answer})}" in prompt
    assert prompt.endswith(
        "User: Please echo back 'x'\n"
        'Assistant: {"tool": "echo", "arguments": {"value": "x"}}\n'
        'Result: "x"\n'
        "Assistant: "
    )


WEATHER = make_tool(
    "weather",
    ToolParam("city", "A city.", ParamType.STRING, True),
    examples=(ToolExample("How warm is it in Atlantis?", (("city", "Atlantis"),), "31 C", "It is 31 C."),),
)
CONVERT = make_tool(
    "convert",
    ToolParam("celsius", "Degrees.", ParamType.NUMBER, True),
    examples=(ToolExample("What is 31 C in F?", (("celsius", 31.0),), "87.8 F", "31 C is 87.8 F."),),
)


def test_tools_examples_come_from_their_metadata_with_a_two_step_one() -> None:
    prompt = completion_prompt([WEATHER, CONVERT, ECHO], "go", [])
    weather_call = json.dumps({"tool": "weather", "arguments": {"city": "Atlantis"}})
    convert_call = json.dumps({"tool": "convert", "arguments": {"celsius": 31.0}})
    assert f'User: How warm is it in Atlantis?\nAssistant: {weather_call}\nResult: "31 C"\n' in prompt
    two_steps = (
        "User: How warm is it in Atlantis, and then: what is 31 C in F?\n"
        f'Assistant: {weather_call}\nResult: "31 C"\n'
        f'Assistant: {convert_call}\nResult: "87.8 F"\n'
        'Assistant: {"answer": "It is 31 C. 31 C is 87.8 F."}\n'
    )
    assert two_steps in prompt
    assert 'Assistant: {"tool": "echo", "arguments": {"value": "example"}}' in prompt


def test_bounds_choices_and_defaults_are_described_in_words() -> None:
    tool = make_tool(
        "search",
        ToolParam("limit", "How many.", ParamType.INTEGER, False, minimum=1, maximum=100, default=20),
        ToolParam("mode", "", ParamType.STRING, False, choices=("fast", "exact"), default="fast"),
        ToolParam("count", "", ParamType.INTEGER, True),  # only the s64 range: nothing to say
    )
    prompt = completion_prompt([tool], "go", [])
    assert (
        "- search: does things. Arguments: limit (integer, optional, 1 to 100, default 20): How many; "
        'mode (string, optional, one of "fast", "exact", default "fast"); count (integer, required).'
    ) in prompt


def test_a_prompt_without_tools_shows_only_direct_answers() -> None:
    prompt = completion_prompt([], "hello", [])
    assert "Tools: none" in prompt
    assert '"tool"' not in prompt
    assert prompt.count("User:") == len(ANSWER_EXAMPLES) + 1
    assert prompt.endswith("User: hello\nAssistant: ")


def examples_of(tool_name: str, *requests: str) -> tuple[ToolExample, ...]:
    return tuple(
        ToolExample(request, (("value", f"v{i}"),), f"r{i}", f"a{i}") for i, request in enumerate(requests)
    )


SAY = make_tool(
    "say",
    ToolParam("value", "", ParamType.STRING, True),
    examples=examples_of("say", "Say hello to the cat.", "Say the weather report for Oslo.", "Say goodbye."),
)
SHOUT = make_tool(
    "shout", ToolParam("value", "", ParamType.STRING, True), examples=examples_of("shout", "Shout it.")
)
WHISPER = make_tool(
    "whisper", ToolParam("value", "", ParamType.STRING, True), examples=examples_of("whisper", "Whisper it.")
)


def test_a_focus_tool_shows_all_its_examples_the_most_similar_nearest_the_request() -> None:
    examples = examples_for([SAY, SHOUT, WHISPER], focus=SAY, request="What is the weather in Oslo?")
    users = [example.user for example in examples]
    # No other tool's example (its values get copied), the direct answer first, and last (nearest
    # the request) the focus tool's example that shares most words with the request.
    assert users == [
        DIRECT_ANSWER.user,
        "Say goodbye.",
        "Say hello to the cat.",
        "Say the weather report for Oslo.",
    ]
    assert all(step.tool == "say" for example in examples for step in example.steps)


def test_without_a_focus_each_tool_shows_its_first_example() -> None:
    examples = examples_for([SAY, SHOUT, WHISPER])
    assert examples[0] == DIRECT_ANSWER
    assert [example.user for example in examples[1:4]] == [
        "Say hello to the cat.",
        "Shout it.",
        "Whisper it.",
    ]
    assert [step.tool for step in examples[4].steps] == ["shout", "whisper"]


def test_tools_without_a_worked_example_get_a_generic_one() -> None:
    prompt = completion_prompt([COUNT], "go", [])
    example = json.dumps({"tool": "count", "arguments": {"n": 1}})
    assert f"Assistant: {example}" in prompt


def test_errors_and_long_observations_are_marked() -> None:
    transcript = [Exchange("{}", "boom", True), Exchange("{}", "y" * (OBSERVATION_LIMIT + 10), False)]
    prompt = completion_prompt([ECHO], "go", transcript)
    assert '\nError: "boom"\n' in prompt
    assert "y" * OBSERVATION_LIMIT + ' [cut: 10 more characters]"' in prompt
    assert "y" * (OBSERVATION_LIMIT + 1) not in prompt


def test_chat_messages_alternate_and_carry_the_instructions_once() -> None:
    transcript = [Exchange('{"tool": "echo", "arguments": {"value": "x"}}', "x", False)]
    messages = chat_messages([ECHO], "Please echo back 'x'", transcript)
    roles = [message["role"] for message in messages]
    # echo's generic example (request, call, result, answer), the direct answer, then the run.
    assert roles == ["user", "assistant"] * 4 + ["user"]
    assert sum("Tools:" in message["content"] for message in messages) == 1
    assert messages[-1]["content"] == 'Result: "x"'


def test_observations_are_json_strings_the_model_can_copy() -> None:
    said = 'She said "hi"\nthen left \\o/'
    prompt = completion_prompt([ECHO], "go", [Exchange("{}", said, False)])
    shown = prompt.rsplit("Result: ", 1)[1].removesuffix("\nAssistant: ")
    assert json.loads(shown) == said  # quotes, the newline and the backslash arrive escaped
    assert "\n" not in shown


@pytest.mark.parametrize(("tools", "focus"), [([SAY, SHOUT, WHISPER], SAY), ([SAY, SHOUT], None), ([], None)])
def test_every_prompt_starts_with_the_prefix_its_tools_and_focus_share(
    tools: list[Tool], focus: Tool | None
) -> None:
    prefix = completion_prefix(tools, focus)
    for request in ("Say hi", "What is the weather in Oslo?"):
        assert completion_prompt(tools, request, [Exchange("{}", "r", False)], focus).startswith(prefix)
    assert request not in prefix


@pytest.mark.parametrize(("tools", "focus"), [([SAY, SHOUT, WHISPER], SAY), ([SAY, SHOUT], None), ([], None)])
def test_every_prompt_starts_with_everything_before_its_request(
    tools: list[Tool], focus: Tool | None
) -> None:
    for request in ("Say hi", "What is the weather in Oslo?"):
        start = completion_start(tools, request, focus)
        assert start.startswith(completion_prefix(tools, focus))
        prompt = completion_prompt(tools, request, [Exchange("{}", "r", False)], focus)
        assert prompt.startswith(start)
        assert prompt[len(start) :].startswith(f"User: {request}\n")


REPEAT = make_tool(
    "repeat",
    ToolParam("value", "", ParamType.STRING, True),
    examples=(
        ToolExample(
            "Print 'blue whale' twice.",
            (("value", "blue whale"),),
            "blue whale blue whale",
            "Done: blue whale",
        ),
    ),
)


def test_a_call_after_another_is_shown_an_example_that_takes_the_first_result() -> None:
    examples = examples_for([WEATHER, REPEAT], focus=REPEAT, request="x", after=WEATHER)
    fed = examples[-1]
    assert fed.user == "How warm is it in Atlantis, then print the result twice."
    assert [(step.tool, step.arguments, step.result) for step in fed.steps] == [
        ("weather", {"city": "Atlantis"}, "31 C"),
        ("repeat", {"value": "31 C"}, "31 C 31 C"),
    ]
    assert fed.answer == "Done: 31 C"
    assert examples[0] == DIRECT_ANSWER
    # In the prompt, right before the request.
    prompt = completion_prompt([WEATHER, REPEAT], "x", [], REPEAT, WEATHER)
    assert prompt.index('"value": "31 C"') > prompt.index('"value": "blue whale"')


def test_no_fed_example_for_a_tool_whose_output_does_not_show_its_argument() -> None:
    # weather's output ("31 C") does not contain its argument ("Atlantis"): swapping it would lie.
    assert examples_for([REPEAT, WEATHER], focus=WEATHER, request="x", after=REPEAT) == examples_for(
        [REPEAT, WEATHER], focus=WEATHER, request="x"
    )
