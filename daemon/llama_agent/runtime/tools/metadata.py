"""What a tool says about itself, independent of the WIT world it was built for."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Matched whole (fullmatch): `$` would also match before a final newline.
TOOL_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
# Control characters other than newline and tab, and the bidirectional overrides, embeddings and
# isolates: in a description they could make the text a person reads (a consent question, a tool
# list) differ from what it is. Shown escaped anyway (llama_agent.common.text); refused here too.
_HIDDEN_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Metadata goes into every prompt that offers the tool: a tool must not be able to crowd the
# model's context out (a 45 KB description would make every run fail).
MAX_DESCRIPTION_CHARS = 1000
MAX_PARAMS = 32
MAX_PARAM_NAME_CHARS = 64
MAX_PARAM_DESCRIPTION_CHARS = 300
MAX_VERSION_CHARS = 64
MAX_EXAMPLES = 8
MAX_EXAMPLE_CHARS = 1000
MAX_CHOICES = 32
MAX_CHOICE_CHARS = 100


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


# What an argument can be: the WIT `value` cases boolean, integer (s64), number (f64), string.
ArgumentValue = bool | int | float | str


@dataclass(frozen=True)
class ToolParam:
    name: str
    description: str
    type: ParamType
    required: bool
    # Inclusive bounds, integer and number parameters only.
    minimum: float | None = None
    maximum: float | None = None
    # String parameters only: the allowed values; empty means any string.
    choices: tuple[str, ...] = ()
    # Optional parameters only: what the tool receives when the argument is left out.
    default: ArgumentValue | None = None


@dataclass(frozen=True)
class ToolExample:
    """A worked example the tool ships: what a user asks, the call the tool should get for it,
    a plausible result of that call, and the final answer, which quotes the result."""

    request: str
    arguments: tuple[tuple[str, ArgumentValue], ...]
    result: str
    answer: str


@dataclass(frozen=True)
class ToolMetadata:
    name: str
    description: str
    version: str
    params: tuple[ToolParam, ...]
    examples: tuple[ToolExample, ...] = field(default=())

    def check(self) -> None:
        """Raise ValueError when the metadata cannot be served as-is."""
        if not TOOL_NAME_PATTERN.fullmatch(self.name):
            raise ValueError(
                f"invalid tool name {self.name!r}: use a letter followed by up to 63 "
                "letters, digits, '_', '-' or '.'"
            )
        _check_text(self.name, "description", self.description, MAX_DESCRIPTION_CHARS)
        _check_text(self.name, "version", self.version, MAX_VERSION_CHARS)
        if len(self.params) > MAX_PARAMS:
            raise ValueError(
                f"tool {self.name!r} declares {len(self.params)} parameters; the limit is {MAX_PARAMS}"
            )
        seen: set[str] = set()
        for param in self.params:
            if param.name in seen:
                raise ValueError(f"tool {self.name!r} declares parameter {param.name!r} twice")
            _check_param(self.name, param)
            seen.add(param.name)
        if len(self.examples) > MAX_EXAMPLES:
            raise ValueError(
                f"tool {self.name!r} has {len(self.examples)} examples; the limit is {MAX_EXAMPLES}"
            )
        for number, example in enumerate(self.examples, start=1):
            _check_example(self, number, example)


def _check_text(tool: str, what: str, text: str, limit: int) -> None:
    """Text a tool shows about itself: within `limit` characters, and nothing hidden in it."""
    if len(text) > limit:
        raise ValueError(f"tool {tool!r}: its {what} has {len(text):,} characters; the limit is {limit:,}")
    hidden = _HIDDEN_IN_TEXT.search(text)
    if hidden is not None:
        raise ValueError(
            f"tool {tool!r}: its {what} holds the control character U+{ord(hidden.group()):04X}: "
            "only printable text, newlines and tabs"
        )


def _check_param(tool: str, param: ToolParam) -> None:
    if not param.name:
        raise ValueError(f"tool {tool!r} has a parameter with an empty name")
    _check_text(tool, "a parameter name", param.name, MAX_PARAM_NAME_CHARS)
    _check_text(
        tool, f"description of parameter {param.name!r}", param.description, MAX_PARAM_DESCRIPTION_CHARS
    )
    _check_bounds(tool, param)
    _check_choices(tool, param)
    if param.default is None:
        return
    if param.required:
        raise ValueError(
            f"tool {tool!r}: parameter {param.name!r} is required, so its default would never be "
            "used; make it optional or drop the default"
        )
    problem = value_problem(param, param.default)
    if problem:
        raise ValueError(f"tool {tool!r}: the default of parameter {param.name!r} {problem}")


def _check_bounds(tool: str, param: ToolParam) -> None:
    bounds = {"minimum": param.minimum, "maximum": param.maximum}
    given = {what: bound for what, bound in bounds.items() if bound is not None}
    if not given:
        return
    where = f"tool {tool!r}: parameter {param.name!r}"
    if param.type not in (ParamType.INTEGER, ParamType.NUMBER):
        raise ValueError(
            f"{where} is {_kind_of(param.type)}: minimum and maximum apply only to integer and "
            "number parameters"
        )
    for what, bound in given.items():
        if not math.isfinite(bound):
            raise ValueError(f"{where} has the {what} {bound}: bounds must be finite numbers")
        if param.type is ParamType.INTEGER and not float(bound).is_integer():
            raise ValueError(f"{where} is an integer, so its {what} must be a whole number, not {bound}")
    if param.minimum is not None and param.maximum is not None and param.minimum > param.maximum:
        raise ValueError(f"{where} has a minimum ({param.minimum:g}) above its maximum ({param.maximum:g})")


def _check_choices(tool: str, param: ToolParam) -> None:
    if not param.choices:
        return
    where = f"tool {tool!r}: parameter {param.name!r}"
    if param.type is not ParamType.STRING:
        raise ValueError(f"{where} is {_kind_of(param.type)}: choices apply only to string parameters")
    if len(param.choices) > MAX_CHOICES:
        raise ValueError(f"{where} has {len(param.choices)} choices; the limit is {MAX_CHOICES}")
    for choice in param.choices:
        _check_text(tool, f"choice {choice[:20]!r}… of parameter {param.name!r}", choice, MAX_CHOICE_CHARS)
    if len(set(param.choices)) < len(param.choices):
        twice = next(choice for choice in param.choices if param.choices.count(choice) > 1)
        raise ValueError(f"{where} lists the choice {twice!r} twice")


def value_problem(param: ToolParam, value: object) -> str | None:
    """What is wrong with `value` as an argument for `param` (a phrase), or None if nothing is."""
    expected = _PYTHON_TYPES[param.type]
    if isinstance(value, bool) != (param.type is ParamType.BOOLEAN) or not isinstance(value, expected):
        return f"is {_kind(value)}, not {_kind_of(param.type)}"
    if isinstance(value, str) and param.choices and value not in param.choices:
        return f"is {value!r}, not one of the choices {', '.join(map(repr, param.choices))}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _bounds_problem(param, value)
    return None


def _bounds_problem(param: ToolParam, value: float) -> str | None:
    if not math.isfinite(value):
        return f"is {value}, not a finite number"
    if param.minimum is not None and value < param.minimum:
        return f"is {value!r}, below the minimum {param.minimum:g}"
    if param.maximum is not None and value > param.maximum:
        return f"is {value!r}, above the maximum {param.maximum:g}"
    return None


# JSON semantics: a number parameter takes 3 as well as 3.0.
_PYTHON_TYPES: dict[ParamType, tuple[type, ...]] = {
    ParamType.STRING: (str,),
    ParamType.INTEGER: (int,),
    ParamType.NUMBER: (int, float),
    ParamType.BOOLEAN: (bool,),
}


def _kind_of(kind: ParamType) -> str:
    return "an integer" if kind is ParamType.INTEGER else f"a {kind.value}"


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def _check_example(metadata: ToolMetadata, number: int, example: ToolExample) -> None:
    where = f"tool {metadata.name!r}: example {number}"
    size = len(example.request) + len(example.result) + len(example.answer)
    size += sum(len(name) + len(str(value)) for name, value in example.arguments)
    if size > MAX_EXAMPLE_CHARS:
        raise ValueError(f"{where} has {size:,} characters; the limit is {MAX_EXAMPLE_CHARS:,}")
    if not example.request.strip() or not example.answer.strip():
        raise ValueError(f"{where} needs a request and an answer")
    params = {param.name: param for param in metadata.params}
    names = [name for name, _ in example.arguments]
    for name, value in example.arguments:
        param = params.get(name)
        if param is None:
            raise ValueError(f"{where} passes {name!r}, which is not a parameter of the tool")
        if names.count(name) > 1:
            raise ValueError(f"{where} passes {name!r} twice")
        problem = value_problem(param, value)
        if problem:
            raise ValueError(f"{where}: its argument {name!r} {problem}")
    missing = [param.name for param in metadata.params if param.required and param.name not in names]
    if missing:
        raise ValueError(f"{where} leaves out the required parameter {missing[0]!r}")


def metadata_from_dict(data: Mapping[str, Any]) -> ToolMetadata:
    """The inverse of `dataclasses.asdict(metadata)` after a JSON round trip (tuples became lists).

    Raises KeyError, TypeError or ValueError for anything else.
    """
    return ToolMetadata(
        name=_text(data["name"]),
        description=_text(data["description"]),
        version=_text(data["version"]),
        params=tuple(_param_from_dict(param) for param in _list(data["params"])),
        examples=tuple(_example_from_dict(example) for example in _list(data["examples"])),
    )


def _param_from_dict(data: Mapping[str, Any]) -> ToolParam:
    default = data["default"]
    return ToolParam(
        name=_text(data["name"]),
        description=_text(data["description"]),
        type=ParamType(data["type"]),
        required=bool(data["required"]),
        minimum=_optional_number(data["minimum"]),
        maximum=_optional_number(data["maximum"]),
        choices=tuple(_text(choice) for choice in _list(data["choices"])),
        default=None if default is None else _argument_value(default),
    )


def _example_from_dict(data: Mapping[str, Any]) -> ToolExample:
    return ToolExample(
        request=_text(data["request"]),
        arguments=tuple(_argument_from_pair(pair) for pair in _list(data["arguments"])),
        result=_text(data["result"]),
        answer=_text(data["answer"]),
    )


def _argument_from_pair(pair: object) -> tuple[str, ArgumentValue]:
    name, value = _list(pair)
    return _text(name), _argument_value(value)


def _argument_value(value: object) -> ArgumentValue:
    if isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"not an argument value: {value!r}")


def _optional_number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"not a number: {value!r}")


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"not a string: {value!r}")


def _list(value: object) -> Sequence[Any]:
    if isinstance(value, list | tuple):
        return value
    raise TypeError(f"not a list: {value!r}")
