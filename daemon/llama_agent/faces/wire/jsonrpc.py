"""JSON-RPC 2.0 as every face speaks it: what a client may send (and the answer for each message
that breaks the rules), the daemon's errors as an answer's error, and JSON out that any parser
reads. The codes are llama_agent.common.errors'."""

from __future__ import annotations

import json
import logging
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types
from pydantic import ValidationError
from pygls.protocol.json_rpc import (
    MsgId,
)

from llama_agent.common.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    AgentError,
    InternalError,
    InvalidParams,
)

log = logging.getLogger(__name__)

# Deeper messages are refused before any handler (or log line) recurses into them.
MAX_NESTING = 128


def json_only(value: Any) -> Any:
    """`value`, with NaN and the infinities (which JSON lacks) replaced by null; TypeError if it
    holds something JSON cannot express at all."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:  # a non-finite number, or a circular reference, which fails again here
        return json.loads(encode_json(value))
    return value


def brief(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters, for a message or log line that names what a client sent."""
    return text if len(text) <= limit else text[:limit] + "…"


def message_id(value: Any) -> MsgId | None:
    """`value` if it can identify a request (LSP: a string or an integer), else None."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return None


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests arrays and objects more than `limit` levels deep (itself counting as one)."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


@dataclass(frozen=True)
class Rejection:
    """Why a message is refused. A request is answered with `code` and `message` (and `id`); the rest
    is only logged."""

    code: int
    message: str
    id: MsgId | None = None
    answer: bool = True


def rejection(error: AgentError, request_id: MsgId | None) -> Rejection:
    """The answer to a request refused before any handler saw it, as a handler's `error` is answered."""
    return Rejection(error.code, error.message, request_id)


def agent_error(error: BaseException, what: str = "a request") -> AgentError:
    """`error`, raised while handling `what`, as the daemon's error that every face answers alike:
    itself if it is one; an SDK's validation error as invalid params, naming the field; anything
    else is a bug, logged here with its traceback and answered as an internal error that names only
    its type."""
    if isinstance(error, AgentError):
        return error
    if isinstance(error, ValidationError):
        return InvalidParams(f"invalid params: {explain(error)}")
    log.error("%s failed: %s", what, error, exc_info=error)
    return InternalError(type(error).__name__)


def explain(error: ValidationError) -> str:
    """The first few problems of a pydantic validation, each with where it is (`params.name: Field
    required`)."""
    problems = [
        f"{'.'.join(map(str, problem['loc'])) or 'the message'}: {problem['msg']}"
        for problem in error.errors()[:3]
    ]
    more = f" (and {error.error_count() - 3} more)" if error.error_count() > 3 else ""
    return brief("; ".join(problems), 400) + more


def check_message(value: Any) -> Rejection | None:
    """What is wrong with `value` as a message from a client, by JSON-RPC 2.0 and LSP; None if nothing.

    A batch is refused as a whole (LSP has no batches). A request whose id cannot be echoed is
    answered with id null. Beyond the envelope, two LSP notifications are checked here because
    their handlers trust their params: `$/cancelRequest` needs an id, and `exit`, which ends the
    process, must come without params (empty ones count as none: Lua clients send `[]`).
    """
    if isinstance(value, list):
        if not value:
            return Rejection(INVALID_REQUEST, "Invalid request: an empty batch")
        return Rejection(
            INVALID_REQUEST, "Invalid request: batches are not supported, send one message per frame"
        )
    if not isinstance(value, dict):
        return Rejection(INVALID_REQUEST, "Invalid request: a message must be a JSON object")
    has_id = "id" in value
    request_id = message_id(value.get("id"))
    if "method" not in value:
        if has_id and ("result" in value or "error" in value):
            return _check_response(value)
        return Rejection(INVALID_REQUEST, "Invalid request: no method", request_id)
    if has_id and request_id is None:
        return Rejection(INVALID_REQUEST, "Invalid request: the id must be a string or an integer")
    method, params = value["method"], value.get("params")
    problem: tuple[int, str] | None = None
    if value.get("jsonrpc") != "2.0":
        problem = INVALID_REQUEST, 'Invalid request: "jsonrpc" must be "2.0"'
    elif not isinstance(method, str):
        problem = INVALID_REQUEST, "Invalid request: the method must be a string"
    elif params is not None and not isinstance(params, dict | list):
        problem = INVALID_PARAMS, f"invalid params for {brief(method)}: params must be an object or an array"
    elif nested_deeper_than(value, MAX_NESTING):
        problem = INVALID_REQUEST, f"Invalid request: nested more than {MAX_NESTING} levels deep"
    elif method == types.CANCEL_REQUEST and not has_id:
        if not isinstance(params, dict) or message_id(params.get("id")) is None:
            problem = (
                INVALID_PARAMS,
                "invalid params for $/cancelRequest: the id must be a string or an integer",
            )
    elif method == types.EXIT and not has_id and params not in (None, {}, []):
        problem = INVALID_PARAMS, "invalid params for exit: it takes none"
    if problem is None:
        return None
    return Rejection(*problem, id=request_id, answer=has_id)


def _check_response(value: dict[str, Any]) -> Rejection | None:
    """A client's answer to one of our requests: never answered, only dropped if malformed."""
    if value.get("jsonrpc") != "2.0":
        return Rejection(INVALID_REQUEST, 'a response whose "jsonrpc" is not "2.0"', answer=False)
    if message_id(value["id"]) is None and not (value["id"] is None and "error" in value):
        return Rejection(INVALID_REQUEST, "a response whose id is not a string or an integer", answer=False)
    if "result" in value and "error" in value:
        return Rejection(INVALID_REQUEST, "a response with both a result and an error", answer=False)
    if nested_deeper_than(value, MAX_NESTING):
        return Rejection(
            INVALID_REQUEST, f"a response nested more than {MAX_NESTING} levels deep", answer=False
        )
    return None


def encode_json(data: Any) -> str:
    """`data` as JSON text (ASCII), never with NaN or Infinity, which JSON lacks: those become null."""
    try:
        return json.dumps(data, allow_nan=False)
    except ValueError:  # a non-finite number; a circular reference fails again below
        loose = json.dumps(data)
        return json.dumps(json.loads(loose, parse_constant=lambda _: None), allow_nan=False)


def _source_roots() -> list[str]:
    paths = sysconfig.get_paths()
    roots = [
        Path(__file__).resolve().parents[2],  # the llama_agent package
        *(Path(paths[key]) for key in ("stdlib", "purelib", "platlib")),
    ]
    names = {str(root) for root in roots} | {str(root.resolve()) for root in roots}
    return sorted(names, key=len, reverse=True)


SOURCE_ROOTS = _source_roots()


def client_safe_error(error: types.ResponseError) -> types.ResponseError:
    """`error` without what is for the daemon's log only: tracebacks and the paths of its own code.

    An internal error (-32603) is a bug, so the client learns only the exception's type.
    """
    if error.code == INTERNAL_ERROR:
        # pygls' internal errors say "Type: text"; ours (InternalError) are already safe.
        kind = error.message.split(":", 1)[0].strip().removeprefix("Internal error (").removesuffix(")")
        return types.ResponseError(INTERNAL_ERROR, InternalError(kind).message)
    data = error.data
    if isinstance(data, dict) and "traceback" in data:
        data = {key: item for key, item in data.items() if key != "traceback"} or None
    message = error.message
    for root in SOURCE_ROOTS:
        message = message.replace(root, "…")
    return types.ResponseError(error.code, message, data)
