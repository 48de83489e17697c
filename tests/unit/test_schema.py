"""Schema derivation from tool metadata, and validation that names the bad field."""

from __future__ import annotations

import pytest

from daemon.runtime.metadata import ParamType, ToolMetadata, ToolParam, param_type_from_text
from daemon.runtime.schema import (
    S64_MAX,
    ArgumentError,
    coerce_arguments,
    input_schema,
    validate_arguments,
)

METADATA = ToolMetadata(
    name="mixed",
    description="every type",
    version="1.0.0",
    params=(
        ToolParam("text", "some text", ParamType.STRING, True),
        ToolParam("count", "how many", ParamType.INTEGER, True),
        ToolParam("ratio", "", ParamType.NUMBER, False),
        ToolParam("loud", "shout?", ParamType.BOOLEAN, False),
    ),
)
SCHEMA = input_schema(METADATA)


def test_schema_has_one_property_per_param_with_json_types() -> None:
    assert SCHEMA["type"] == "object"
    assert SCHEMA["additionalProperties"] is False
    assert SCHEMA["required"] == ["text", "count"]
    assert SCHEMA["properties"]["text"] == {"type": "string", "description": "some text"}
    assert SCHEMA["properties"]["count"]["type"] == "integer"
    assert SCHEMA["properties"]["count"]["maximum"] == S64_MAX
    assert SCHEMA["properties"]["ratio"] == {"type": "number"}  # no empty description
    assert SCHEMA["properties"]["loud"]["type"] == "boolean"


def test_schema_of_a_tool_without_params_accepts_only_an_empty_object() -> None:
    schema = input_schema(ToolMetadata("none", "", "1", ()))
    validate_arguments(schema, {})
    with pytest.raises(ArgumentError):
        validate_arguments(schema, {"x": 1})


def test_valid_arguments_pass() -> None:
    validate_arguments(SCHEMA, {"text": "a b c", "count": 3, "ratio": 0.5, "loud": True})
    validate_arguments(SCHEMA, {"text": "", "count": 3.0})  # JSON: 3.0 is an integer


@pytest.mark.parametrize(
    ("arguments", "field", "fragment"),
    [
        ({"count": 1}, "text", "missing required argument 'text'"),
        ({"text": "x", "count": "1"}, "count", "'1' is not of type 'integer'"),
        ({"text": "x", "count": 1.5}, "count", "not of type 'integer'"),
        ({"text": "x", "count": 2**64}, "count", "maximum"),
        ({"text": "x", "count": 1, "loud": "yes"}, "loud", "not of type 'boolean'"),
        ({"text": "x", "count": 1, "ratio": True}, "ratio", "not of type 'number'"),
        ({"text": "x", "count": 1, "extra": 1}, "extra", "unexpected argument 'extra'"),
        (["text"], None, "not of type 'object'"),
    ],
)
def test_invalid_arguments_name_the_field(arguments: object, field: str | None, fragment: str) -> None:
    with pytest.raises(ArgumentError) as raised:
        validate_arguments(SCHEMA, arguments)
    assert raised.value.field == field
    assert fragment in str(raised.value)


def test_coercion_gives_wasm_types() -> None:
    coerced = coerce_arguments(METADATA, {"text": "t", "count": 3.0, "ratio": 2, "loud": False})
    assert coerced == {"text": "t", "count": 3, "ratio": 2.0, "loud": False}
    assert type(coerced["count"]) is int
    assert type(coerced["ratio"]) is float


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("string", ParamType.STRING),
        ("Integer", ParamType.INTEGER),
        ("f64", ParamType.NUMBER),
        (" bool ", ParamType.BOOLEAN),
        ("whatever", ParamType.STRING),
    ],
)
def test_legacy_type_text_maps_to_json_types(text: str, expected: ParamType) -> None:
    assert param_type_from_text(text) is expected


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        (ToolMetadata("", "", "1", ()), "invalid tool name"),
        (ToolMetadata("has space", "", "1", ()), "invalid tool name"),
        (
            ToolMetadata("dup", "", "1", (ToolParam("a", "", ParamType.STRING, True),) * 2),
            "declares parameter 'a' twice",
        ),
        (ToolMetadata("empty", "", "1", (ToolParam("", "", ParamType.STRING, True),)), "empty name"),
    ],
)
def test_metadata_that_cannot_be_served_is_rejected(metadata: ToolMetadata, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        metadata.check()
