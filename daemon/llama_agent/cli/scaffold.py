"""`llama-agent tools new`: a working tool to start from, in Python or JavaScript."""

from __future__ import annotations

from pathlib import Path
from string import Template
from typing import Literal

from llama_agent.runtime.tools.metadata import TOOL_NAME_PATTERN

Language = Literal["python", "js"]

PYTHON = Template('''"""$name: upper-cases its text. Replace this with what your tool does."""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports.types import Argument, Example, Metadata, Param, ParamType, Value_String


class Tool(exports.Tool):
    def describe(self) -> Metadata:
        return Metadata(
            name="$name",
            description="Upper-cases the given text.",
            version="0.1.0",
            params=[
                Param(
                    name="text",
                    description="The text to change.",
                    type=ParamType.STRING,
                    required=True,
                    minimum=None,  # bounds: integer and number parameters only
                    maximum=None,
                    choices=[],  # the only values allowed, string parameters only; [] = any
                    default_value=None,  # what an omitted optional parameter becomes
                )
            ],
            # Shown to the model: a request, the call it should make, a result, an answer quoting it.
            # Made-up values, so that the model never takes them for facts.
            examples=[
                Example(
                    request="Make 'example words' loud.",
                    arguments=[Argument(name="text", value=Value_String("example words"))],
                    result="EXAMPLE WORDS",
                    answer="EXAMPLE WORDS",
                )
            ],
        )

    def invoke(self, args: list[Argument]) -> str:
        for arg in args:
            if arg.name == "text" and isinstance(arg.value, Value_String):
                return arg.value.value.upper()
        raise Err("missing the 'text' argument")  # an error result, not a crash
''')

JAVASCRIPT = Template("""// $name: upper-cases its text. Replace this with what your tool does.
export const tool = {
  describe() {
    return {
      name: "$name",
      description: "Upper-cases the given text.",
      version: "0.1.0",
      params: [
        {
          name: "text",
          description: "The text to change.",
          type: "string",
          required: true,
          minimum: undefined, // bounds: integer and number parameters only
          maximum: undefined,
          choices: [], // the only values allowed, string parameters only; [] = any
          defaultValue: undefined, // what an omitted optional parameter becomes: { tag: "string", val: "x" }
        },
      ],
      // Shown to the model: a request, the call it should make, a result, an answer quoting it.
      // Made-up values, so that the model never takes them for facts.
      examples: [
        {
          request: "Make 'example words' loud.",
          arguments: [{ name: "text", value: { tag: "string", val: "example words" } }],
          result: "EXAMPLE WORDS",
          answer: "EXAMPLE WORDS",
        },
      ],
    };
  },
  invoke(args) {
    const text = args.find((arg) => arg.name === "text");
    if (!text || text.value.tag !== "string") throw "missing the 'text' argument"; // an error result
    return text.value.val.toUpperCase();
  },
};
""")

FILES: dict[Language, tuple[str, Template]] = {"python": ("app.py", PYTHON), "js": ("tool.js", JAVASCRIPT)}


class ScaffoldError(Exception):
    pass


def new_tool(name: str, language: Language, parent: Path) -> Path:
    """Create `parent/name/` with a tool that builds and runs as it is; return the directory."""
    if not TOOL_NAME_PATTERN.fullmatch(name):
        raise ScaffoldError(
            f"invalid tool name {name!r}: use a letter followed by letters, digits, '_', '-' or '.'"
        )
    directory = parent / name
    if directory.exists():
        raise ScaffoldError(f"{directory} already exists")
    file_name, template = FILES[language]
    directory.mkdir(parents=True)
    (directory / file_name).write_text(template.substitute(name=name), encoding="utf-8")
    return directory
