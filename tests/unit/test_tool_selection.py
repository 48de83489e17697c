"""With many tools, only the relevant ones are offered."""

from __future__ import annotations

from pathlib import Path

from llama_agent.runtime.tools.metadata import ParamType, ToolExample, ToolMetadata, ToolParam
from llama_agent.runtime.tools.schema import input_schema
from llama_agent.services.agent.tool_selection import MAX_OFFERED, SELECTED, relevant_tools
from llama_agent.services.tools.registry import Tool


def make_tool(name: str, description: str, example: str = "") -> Tool:
    params = (ToolParam("value", "the input", ParamType.STRING, True),)
    examples = (ToolExample(example, (("value", "x"),), "x", "x"),) if example else ()
    metadata = ToolMetadata(name, description, "1.0.0", params, examples)
    loaded = type("Loaded", (), {"metadata": metadata, "path": Path(f"{name}.wasm"), "content_hash": name})()
    return Tool(loaded, input_schema(metadata))


USEFUL = [
    make_tool("read_file", "Reads a text file in the workspace.", "What does notes.txt say?"),
    make_tool("list_dir", "Lists the files and folders in a directory."),
    make_tool("calc", "Evaluates an arithmetic expression.", "What is 6 times 7?"),
    make_tool("datetime", "The current date and time in a time zone.", "What time is it in Lima?"),
]
FILLER = [
    make_tool(f"gadget{n:04d}", f"Operates gadget model {n} of the warehouse robots.") for n in range(996)
]
MANY = sorted(USEFUL + FILLER, key=lambda tool: tool.name)


def names(tools: list[Tool]) -> list[str]:
    return [tool.name for tool in tools]


def test_a_few_tools_are_all_offered() -> None:
    few = MANY[:MAX_OFFERED]
    assert relevant_tools(few, "anything") == few


def test_among_a_thousand_the_matching_tool_is_offered() -> None:
    cases = {
        "Show me what notes.txt says": "read_file",
        "Which files are in the src folder?": "list_dir",
        "What time is it in Tokyo?": "datetime",
        "Calculate 17 times 23": "calc",
    }
    for prompt, wanted in cases.items():
        offered = relevant_tools(MANY, prompt)
        assert wanted in names(offered), (prompt, names(offered))
        assert len(offered) == SELECTED
        assert offered == sorted(offered, key=lambda tool: tool.name)  # in the tools' own order


def test_a_tool_named_in_the_prompt_or_forced_is_always_offered() -> None:
    assert "gadget0500" in names(relevant_tools(MANY, "run gadget0500 now"))
    assert "gadget0007" in names(relevant_tools(MANY, "What time is it?", keep=["gadget0007"]))


def test_a_prompt_matching_nothing_still_gets_tools() -> None:
    assert len(relevant_tools(MANY, "Hi there!")) == SELECTED
