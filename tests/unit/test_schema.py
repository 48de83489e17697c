"""Schema derivation from tool metadata, and validation that names the bad field."""

from __future__ import annotations

import pytest
from llama_agent.runtime.tools.metadata import ParamType, ToolMetadata, ToolParam, param_type_from_text
from llama_agent.runtime.tools.schema import (
    S64_MAX,
    S64_MIN,
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


BOUNDED = ToolMetadata(
    name="bounded",
    description="bounds, choices and defaults",
    version="2.0.0",
    params=(
        ToolParam("text", "", ParamType.STRING, True),
        ToolParam("count", "", ParamType.INTEGER, False, minimum=1, maximum=100, default=20),
        ToolParam("huge", "", ParamType.INTEGER, False, minimum=-1e30, maximum=1e30),
        ToolParam("ratio", "", ParamType.NUMBER, False, minimum=0.0, maximum=1.0, default=0.5),
        ToolParam("mode", "", ParamType.STRING, False, choices=("fast", "exact"), default="fast"),
        ToolParam("loud", "", ParamType.BOOLEAN, False, default=False),
        ToolParam("note", "", ParamType.STRING, False),
    ),
)
BOUNDED_SCHEMA = input_schema(BOUNDED)


def test_schema_carries_bounds_choices_and_defaults() -> None:
    properties = BOUNDED_SCHEMA["properties"]
    assert properties["count"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}
    assert type(properties["count"]["minimum"]) is int  # an integer's bounds read as integers
    assert properties["ratio"] == {"type": "number", "minimum": 0.0, "maximum": 1.0, "default": 0.5}
    assert properties["mode"] == {"type": "string", "enum": ["fast", "exact"], "default": "fast"}
    assert properties["loud"] == {"type": "boolean", "default": False}
    assert properties["note"] == {"type": "string"}
    assert BOUNDED_SCHEMA["required"] == ["text"]


def test_integer_bounds_beyond_s64_are_clamped_to_it() -> None:
    huge = BOUNDED_SCHEMA["properties"]["huge"]
    assert (huge["minimum"], huge["maximum"]) == (S64_MIN, S64_MAX)


@pytest.mark.parametrize(
    ("arguments", "field", "fragment"),
    [
        ({"text": "x", "count": 0}, "count", "less than the minimum of 1"),
        ({"text": "x", "count": 101}, "count", "greater than the maximum of 100"),
        ({"text": "x", "ratio": 1.01}, "ratio", "greater than the maximum of 1.0"),
        ({"text": "x", "ratio": -0.1}, "ratio", "less than the minimum of 0.0"),
        ({"text": "x", "mode": "fuzzy"}, "mode", "'fuzzy' is not one of ['fast', 'exact']"),
    ],
)
def test_validation_enforces_bounds_and_choices(arguments: object, field: str, fragment: str) -> None:
    with pytest.raises(ArgumentError) as raised:
        validate_arguments(BOUNDED_SCHEMA, arguments)
    assert raised.value.field == field
    assert fragment in str(raised.value)


def test_bounds_are_inclusive() -> None:
    validate_arguments(BOUNDED_SCHEMA, {"text": "x", "count": 1, "ratio": 0.0, "mode": "exact"})
    validate_arguments(BOUNDED_SCHEMA, {"text": "x", "count": 100, "ratio": 1.0})


def test_coercion_fills_in_defaults_of_omitted_optional_params() -> None:
    coerced = coerce_arguments(BOUNDED, {"text": "t"})
    assert coerced == {"text": "t", "count": 20, "ratio": 0.5, "mode": "fast", "loud": False}
    assert "note" not in coerced and "huge" not in coerced  # no default: still absent
    assert type(coerced["count"]) is int
    assert type(coerced["ratio"]) is float


def test_coercion_keeps_given_arguments_over_defaults() -> None:
    given = {"text": "t", "count": 7.0, "ratio": 1, "mode": "exact", "loud": True, "note": "n"}
    coerced = coerce_arguments(BOUNDED, given)
    assert coerced == {"text": "t", "count": 7, "ratio": 1.0, "mode": "exact", "loud": True, "note": "n"}
    assert type(coerced["count"]) is int


def test_a_schema_made_where_a_freed_one_was_is_validated_by_its_own_rules() -> None:
    """Validators are kept per schema object; a new object at a freed one's address is not the old
    schema (CPython reuses addresses at once)."""
    for round_ in range(50):
        strings = {"type": "object", "properties": {"value": {"type": "string"}}}
        validate_arguments(strings, {"value": "text"})
        del strings
        integers = {"type": "object", "properties": {"value": {"type": "integer"}}}
        with pytest.raises(ArgumentError):
            validate_arguments(integers, {"value": f"text {round_}"})
        validate_arguments(integers, {"value": 3})
