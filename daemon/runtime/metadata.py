"""What a tool says about itself, independent of the WIT world it was built for."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

TOOL_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
# Metadata goes into every prompt that offers the tool: a tool must not be able to crowd the
# model's context out (a 45 KB description would make every run fail).
MAX_DESCRIPTION_CHARS = 1000
MAX_PARAMS = 32
MAX_PARAM_NAME_CHARS = 64
MAX_PARAM_DESCRIPTION_CHARS = 300
MAX_VERSION_CHARS = 64
MAX_EXAMPLES = 8
MAX_EXAMPLE_CHARS = 1000


class ParamType(StrEnum):
    """The JSON types a tool parameter may have."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"


# Spellings seen in components built for the legacy world, whose `type` is free text.
_LEGACY_TYPE_ALIASES: dict[str, ParamType] = {
    "string": ParamType.STRING,
    "str": ParamType.STRING,
    "text": ParamType.STRING,
    "integer": ParamType.INTEGER,
    "int": ParamType.INTEGER,
    "number": ParamType.NUMBER,
    "float": ParamType.NUMBER,
    "double": ParamType.NUMBER,
    "f64": ParamType.NUMBER,
    "boolean": ParamType.BOOLEAN,
    "bool": ParamType.BOOLEAN,
}


def param_type_from_text(text: str) -> ParamType:
    """Map a legacy free-text type to a JSON type; anything unknown is passed as a string."""
    return _LEGACY_TYPE_ALIASES.get(text.strip().lower(), ParamType.STRING)


@dataclass(frozen=True)
class ToolParam:
    name: str
    description: str
    type: ParamType
    required: bool


@dataclass(frozen=True)
class ToolExample:
    """A worked example shipped by a legacy tool: a user request and the assistant's call."""

    user: str
    assistant: str


@dataclass(frozen=True)
class ToolMetadata:
    name: str
    description: str
    version: str
    params: tuple[ToolParam, ...]
    examples: tuple[ToolExample, ...] = field(default=())

    def check(self) -> None:
        """Raise ValueError when the metadata cannot be served as-is."""
        if not TOOL_NAME_PATTERN.match(self.name):
            raise ValueError(
                f"invalid tool name {self.name!r}: use a letter followed by up to 63 "
                "letters, digits, '_', '-' or '.'"
            )
        _check_length(self.name, "description", self.description, MAX_DESCRIPTION_CHARS)
        _check_length(self.name, "version", self.version, MAX_VERSION_CHARS)
        if len(self.params) > MAX_PARAMS:
            raise ValueError(
                f"tool {self.name!r} declares {len(self.params)} parameters; the limit is {MAX_PARAMS}"
            )
        if len(self.examples) > MAX_EXAMPLES:
            raise ValueError(
                f"tool {self.name!r} has {len(self.examples)} examples; the limit is {MAX_EXAMPLES}"
            )
        for example in self.examples:
            _check_length(self.name, "example", example.user + example.assistant, MAX_EXAMPLE_CHARS)
        seen: set[str] = set()
        for param in self.params:
            if not param.name:
                raise ValueError(f"tool {self.name!r} has a parameter with an empty name")
            if param.name in seen:
                raise ValueError(f"tool {self.name!r} declares parameter {param.name!r} twice")
            _check_length(self.name, "a parameter name", param.name, MAX_PARAM_NAME_CHARS)
            _check_length(
                self.name,
                f"description of parameter {param.name!r}",
                param.description,
                MAX_PARAM_DESCRIPTION_CHARS,
            )
            seen.add(param.name)


def _check_length(tool: str, what: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise ValueError(f"tool {tool!r}: its {what} has {len(text):,} characters; the limit is {limit:,}")
