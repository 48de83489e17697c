"""Strict JSON in (I-JSON, RFC 7493), and how to refuse a body that is not, for every face."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from llama_agent.common.errors import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR
from llama_agent.faces.wire.jsonrpc import Rejection, message_id

# The escape of a UTF-16 surrogate: only then can a parsed string hold an unpaired one.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class NotStandardJson(ValueError):
    """Read by Python's json module, but not JSON as I-JSON (RFC 7493) has it: NaN, Infinity, a
    number beyond a double's range, or a string holding half a UTF-16 surrogate pair."""


def _reject_constant(name: str) -> Any:
    raise NotStandardJson(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStandardJson(f"the number {text[:40]} is out of range")
    return value


def _int_in_range(text: str) -> int:
    value = int(text)  # ValueError past 4,300 digits
    if len(text) > 300 and not is_standard(value):
        raise NotStandardJson(f"the number {text[:40]}… is out of range")
    return value


def parse_json(body: bytes) -> Any:
    """Strict JSON, as I-JSON asks: UTF-8, no NaN or Infinity, every number within a double's
    range, and no string holding half of a UTF-16 surrogate pair (it is not Unicode).

    Raises ValueError (NotStandardJson for what Python alone would read, UnicodeDecodeError, ...)
    or RecursionError (nesting too deep for the parser).
    """
    text = body.decode("utf-8").removeprefix("\ufeff")  # a byte order mark may be ignored (RFC 8259)
    value = json.loads(
        text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_int_in_range
    )
    if SURROGATE_ESCAPE.search(text) and not is_standard(value):
        raise NotStandardJson("a string holds an unpaired UTF-16 surrogate, which is not Unicode")
    return value


def is_standard(value: Any) -> bool:
    """Whether `value` is within I-JSON: finite numbers in a double's range, strings of Unicode."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(node, float) and not math.isfinite(node):
            return False
        elif isinstance(node, int) and not isinstance(node, bool):
            try:
                float(node)
            except OverflowError:
                return False
    return True


def refusal(body: bytes, error: Exception) -> Rejection:
    """How to refuse a body that is not (strict) JSON: a parse error with id null, unless a lenient
    reading (Python's, which takes NaN, Infinity and any number or string) finds a request with a
    usable id, answered with it, or a notification or response, which is never answered."""
    parse_error = Rejection(PARSE_ERROR, f"Parse error: {error}")
    if not isinstance(error, NotStandardJson):
        return parse_error
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return parse_error
    if not isinstance(value, dict):
        return parse_error
    if "method" in value and "id" in value:
        request_id = message_id(value["id"]) if is_standard(value["id"]) else None
        if request_id is None:
            return parse_error
        if is_standard({key: item for key, item in value.items() if key != "params"}):
            return Rejection(INVALID_PARAMS, f"invalid params: {error}", request_id)
        return Rejection(INVALID_REQUEST, f"Invalid request: {error}", request_id)
    if "method" in value or ("id" in value and ("result" in value or "error" in value)):
        return Rejection(PARSE_ERROR, f"not JSON: {error}", answer=False)
    return parse_error
