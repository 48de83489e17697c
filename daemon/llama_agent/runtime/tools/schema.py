"""JSON Schema derived from tool metadata, and argument validation against it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from llama_agent.common.errors import InvalidParams
from llama_agent.runtime.tools.metadata import ParamType, ToolMetadata, ToolParam

# WIT `s64` bounds: a larger integer cannot reach the tool intact.
S64_MIN = -(2**63)
S64_MAX = 2**63 - 1

JsonObject = dict[str, Any]
# The longest reason an error gives for arguments that do not match (it may quote them).
MAX_MESSAGE_CHARS = 300


class ArgumentError(InvalidParams, ValueError):
    """Arguments that do not match a tool's input schema. `field` names the offender."""


def input_schema(metadata: ToolMetadata) -> JsonObject:
    """The JSON Schema (draft 2020-12) of a tool's arguments object."""
    return {
        "type": "object",
        "properties": {param.name: _property(param) for param in metadata.params},
        "required": [p.name for p in metadata.params if p.required],
        "additionalProperties": False,
    }


def _property(param: ToolParam) -> JsonObject:
    prop: JsonObject = {"type": param.type.value}
    if param.description:
        prop["description"] = param.description
    if param.type is ParamType.INTEGER:
        low = S64_MIN if param.minimum is None else max(S64_MIN, int(param.minimum))
        high = S64_MAX if param.maximum is None else min(S64_MAX, int(param.maximum))
        prop["minimum"], prop["maximum"] = low, high
    elif param.type is ParamType.NUMBER:
        if param.minimum is not None:
            prop["minimum"] = param.minimum
        if param.maximum is not None:
            prop["maximum"] = param.maximum
    if param.choices:
        prop["enum"] = list(param.choices)
    if param.default is not None:
        prop["default"] = param.default
    return prop


def validate_arguments(schema: JsonObject, arguments: object) -> None:
    """Raise ArgumentError, naming the bad field, unless `arguments` matches `schema`."""
    validator = _validator(schema)
    if validator.is_valid(arguments):
        return
    error = best_match(validator.iter_errors(arguments))
    assert error is not None  # is_valid said there is one
    raise _argument_error(error)


_VALIDATORS: OrderedDict[int, tuple[JsonObject, Draft202012Validator]] = OrderedDict()
_VALIDATORS_LOCK = threading.Lock()
MAX_CACHED_VALIDATORS = 1024  # tools' schemas and the protocol's; each is a few kilobytes


def _validator(schema: JsonObject) -> Draft202012Validator:
    """The validator of `schema`, made once per schema object: making one (its reference registry)
    costs more than validating a call's arguments with it."""
    with _VALIDATORS_LOCK:
        cached = _VALIDATORS.get(id(schema))
        if cached is not None and cached[0] is schema:
            _VALIDATORS.move_to_end(id(schema))
            return cached[1]
        validator = Draft202012Validator(schema)
        _VALIDATORS[id(schema)] = (schema, validator)  # holding `schema` keeps its id unique
        while len(_VALIDATORS) > MAX_CACHED_VALIDATORS:
            _VALIDATORS.popitem(last=False)
        return validator


def _argument_error(error: ValidationError) -> ArgumentError:
    if error.validator == "required":
        missing = _missing_property(error)
        return ArgumentError(f"missing required argument {missing!r}", missing)
    if error.validator == "additionalProperties":
        extra = _unexpected_properties(error)
        names = _cut(", ".join(repr(name) for name in extra))
        return ArgumentError(f"unexpected argument {names}", extra[0] if extra else None)
    message = _cut(error.message)
    if error.path:
        field = str(error.path[0])
        return ArgumentError(f"argument {field!r}: {message}", field)
    return ArgumentError(f"arguments: {message}")


def _cut(text: str) -> str:
    """`text` (which may quote what the client sent) at most MAX_MESSAGE_CHARS long: a client's
    megabyte string is not said back whole."""
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "…"


def _missing_property(error: ValidationError) -> str:
    instance = error.instance if isinstance(error.instance, dict) else {}
    required = error.validator_value if isinstance(error.validator_value, list) else []
    return next((str(name) for name in required if name not in instance), "?")


def _unexpected_properties(error: ValidationError) -> list[str]:
    instance = error.instance if isinstance(error.instance, dict) else {}
    allowed = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
    return sorted(str(name) for name in instance if name not in allowed)


def coerce_arguments(metadata: ToolMetadata, arguments: JsonObject) -> JsonObject:
    """Give each validated argument the exact Python type its parameter declares, and add the
    default of each optional parameter left out that has one, so the tool receives it.

    JSON allows 3.0 for an integer and 3 for a number; the Wasm side needs s64 and f64.
    """
    coerced: JsonObject = {}
    for param in metadata.params:
        if param.name in arguments:
            value = arguments[param.name]
        elif param.default is not None:
            value = param.default
        else:
            continue
        if param.type is ParamType.INTEGER:
            coerced[param.name] = int(value)
        elif param.type is ParamType.NUMBER:
            coerced[param.name] = float(value)
        else:
            coerced[param.name] = value
    return coerced
