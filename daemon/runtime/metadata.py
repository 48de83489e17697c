"""What a tool says about itself, independent of the WIT world it was built for."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

TOOL_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


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
        seen: set[str] = set()
        for param in self.params:
            if not param.name:
                raise ValueError(f"tool {self.name!r} has a parameter with an empty name")
            if param.name in seen:
                raise ValueError(f"tool {self.name!r} declares parameter {param.name!r} twice")
            seen.add(param.name)
