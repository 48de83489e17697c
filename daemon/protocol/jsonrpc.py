"""pygls plumbing: plain-dict params for custom methods, our capabilities in `initialize`, and
JSON-RPC's rules for what a client may send, with an answer for every request that breaks them."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import sysconfig
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import attrs
import cattrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.protocol import LanguageServerProtocol, default_converter, lsp_method
from pygls.protocol.json_rpc import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
    MsgId,
)

from daemon import __version__
from daemon.protocol.params import CUSTOM_METHODS, CUSTOM_NOTIFICATIONS

log = logging.getLogger(__name__)
# -vv turns pygls' loggers up to show message bodies: the bodies we send are logged there too.
bodies_log = logging.getLogger("pygls.protocol.json_rpc")

INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Server-defined errors, the same on every face: a run cannot run because the model cannot be
# loaded (or its server failed), or because its prompt is longer than the model's context; ACP
# holds no more sessions.
MODEL_UNAVAILABLE = -32010
PROMPT_TOO_LONG = -32011
TOO_MANY_SESSIONS = -32012
# Deeper messages are refused before any handler (or log line) recurses into them.
MAX_NESTING = 128

# Advertised under `capabilities.experimental.llamaAgent` in the initialize result.
CUSTOM_CAPABILITIES: dict[str, Any] = {
    "llamaAgent": {
        "version": __version__,
        "methods": list(CUSTOM_METHODS),
        "notifications": list(CUSTOM_NOTIFICATIONS),
    }
}


def agent_converter() -> cattrs.Converter:
    """pygls' converter, with plain-dict params for non-LSP messages and only JSON going out.

    Incoming: the default turns custom params into namedtuples, which mangles keys such as
    `$schema`; and missing or extra top-level fields must not raise here, since an exception while
    structuring happens before the request id is known and leaves the client waiting.
    Outgoing: pygls encodes with json.dumps' defaults, which would write NaN and Infinity as bare
    words no JSON parser accepts, so those become null here; an answer that is not JSON at all
    becomes an internal error, so the client is not left waiting; and an error answer keeps what
    is for the daemon's log only (`client_safe_error`).
    """
    converter: cattrs.Converter = default_converter()  # type: ignore[no-untyped-call]
    for message_class in (JsonRPCRequestMessage, JsonRPCNotification, JsonRPCResponseMessage):
        converter.register_structure_hook(message_class, _keep_plain)
    _register_json_only(converter)
    return converter


def _keep_plain(message: dict[str, Any], cls: type) -> Any:
    names = [field.name for field in attrs.fields(cls)]
    return cls(**{name: message.get(name) for name in names})


def _register_json_only(converter: cattrs.Converter) -> None:
    unstructure_answer = converter.get_unstructure_hook(JsonRPCResponseMessage)
    unstructure_error = converter.get_unstructure_hook(types.ResponseErrorMessage)

    def answer(message: JsonRPCResponseMessage) -> dict[str, Any]:
        data: dict[str, Any]
        if isinstance(message.result, dict | list):  # the daemon's own methods answer plain JSON
            data = {"jsonrpc": message.jsonrpc, "id": message.id, "result": message.result}
        else:  # LSP's (initialize) answer with lsprotocol's types
            data = unstructure_answer(message)
        try:
            data["result"] = json_only(data["result"])
        except (TypeError, ValueError, RecursionError):
            log.exception("cannot encode the answer to request %r as JSON", message.id)
            error = {"code": INTERNAL_ERROR, "message": "Internal error: the answer is not JSON"}
            return {"jsonrpc": "2.0", "id": message.id, "error": error}
        return data

    def error_answer(message: types.ResponseErrorMessage) -> dict[str, Any]:
        if message.error is not None:
            message = attrs.evolve(message, error=client_safe_error(message.error))
        data: dict[str, Any] = unstructure_error(message)
        return data

    def outgoing(unstructure: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def with_json_params(message: Any) -> Any:
            data = unstructure(message)
            if "params" in data:  # a TypeError drops the message, which pygls logs
                data["params"] = json_only(data["params"])
            return data

        return with_json_params

    converter.register_unstructure_hook(JsonRPCResponseMessage, answer)
    converter.register_unstructure_hook(types.ResponseErrorMessage, error_answer)
    for message_class in (JsonRPCRequestMessage, JsonRPCNotification):
        converter.register_unstructure_hook(
            message_class, outgoing(converter.get_unstructure_hook(message_class))
        )


def json_only(value: Any) -> Any:
    """`value`, with NaN and the infinities (which JSON lacks) replaced by null; TypeError if it
    holds something JSON cannot express at all."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:  # a non-finite number, or a circular reference, which fails again here
        return json.loads(encode_json(value))
    return value


def _explain(cause: BaseException | None) -> str:
    if isinstance(cause, cattrs.ClassValidationError):
        return "; ".join(cattrs.transform_error(cause))
    return str(cause) if cause else "unreadable message"


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


def frame(body: str) -> bytes:
    """`body`, JSON text in ASCII (so its length is its size), with the base protocol's headers."""
    content_type = f"{LanguageServerProtocol.CONTENT_TYPE}; charset={LanguageServerProtocol.CHARSET}"
    return f"Content-Length: {len(body)}\r\nContent-Type: {content_type}\r\n\r\n{body}".encode("ascii")


def _source_roots() -> list[str]:
    paths = sysconfig.get_paths()
    roots = [
        Path(__file__).resolve().parents[1],
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
        kind = error.message.split(":", 1)[0].strip()
        detail = f" ({kind})" if kind.isidentifier() else ""
        return types.ResponseError(
            INTERNAL_ERROR, f"Internal error{detail}: the daemon's log has the details"
        )
    data = error.data
    if isinstance(data, dict) and "traceback" in data:
        data = {key: item for key, item in data.items() if key != "traceback"} or None
    message = error.message
    for root in SOURCE_ROOTS:
        message = message.replace(root, "…")
    return types.ResponseError(error.code, message, data)


class RejectedMessage:
    """Stands for a message refused while it was being parsed (and answered, if it was a request)."""

    jsonrpc = "rejected"


class AgentProtocol(LanguageServerProtocol):
    def __init__(self, server: Any, converter: cattrs.Converter) -> None:
        super().__init__(server, converter)
        self.shut_down = False  # after `shutdown`: only `exit` is handled
        # Said in `initialize` (experimental.llamaAgent): e.g. the model the daemon is set up with.
        self.announced: dict[str, Any] = {}

    def structure_message(self, data: Any) -> Any:
        """The message object for `data`, or a RejectedMessage once a bad message is answered or logged.

        pygls raises here, before the request id reaches any handler, and the frame loop calls
        this on every message (not as json's object_hook), so `data` may be any JSON value.
        """
        rejection = check_message(data)
        if rejection is None and "id" in data and "method" in data and self._is_notification(data["method"]):
            rejection = Rejection(
                INVALID_REQUEST,
                f"Invalid request: {brief(data['method'])} is a notification, send it without an id",
                data["id"],
            )
        if rejection is not None:
            return self._reject(data, rejection)
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            method = brief(str(data.get("method", "a response")))
            return self._reject(
                data,
                Rejection(
                    INVALID_PARAMS,
                    f"invalid params for {method}: {_explain(error.__cause__)}",
                    message_id(data.get("id")),
                    answer="id" in data and "method" in data,
                ),
            )

    def _is_notification(self, method: str) -> bool:
        """Whether LSP defines `method` as a notification (a message type without an id)."""
        message_type = self.get_message_type(method)
        return (
            message_type is not None
            and attrs.has(message_type)
            and "id" not in attrs.fields_dict(message_type)
        )

    def _reject(self, data: Any, rejection: Rejection) -> RejectedMessage:
        if rejection.answer:
            log.warning("refusing a request (id %r): %s", rejection.id, rejection.message)
            error = {"code": rejection.code, "message": rejection.message}
            self.send_message({"jsonrpc": "2.0", "id": rejection.id, "error": error})
        else:
            method = data.get("method") if isinstance(data, dict) else None
            kind = f"a {brief(method)!r} notification" if isinstance(method, str) else "a message"
            log.warning("ignoring %s: %s", kind, rejection.message)
        return RejectedMessage()

    def handle_message(self, message: Any) -> None:
        """pygls' dispatch, except that refused messages stop here, requests after `shutdown` are
        answered (LSP's InvalidRequest) and unknown notifications are dropped quietly."""
        if isinstance(message, RejectedMessage):
            return
        method = getattr(message, "method", None)
        is_request = method is not None and hasattr(message, "id")
        if self.shut_down and method != types.EXIT:
            if is_request:
                log.warning(
                    "refusing %r (id %r): the server is shutting down", brief(str(method)), message.id
                )
                error = {"code": INVALID_REQUEST, "message": "the server is shutting down"}
                self.send_message({"jsonrpc": "2.0", "id": message.id, "error": error})
            return
        if method is not None and not is_request and not self._has_handler(method):
            log.debug("ignoring the notification %r: no handler", brief(method))
            return
        super().handle_message(message)

    def _has_handler(self, method: str) -> bool:
        return (
            method == types.CANCEL_REQUEST or method in self.fm.builtin_features or method in self.fm.features
        )

    def send_message(self, message: dict[str, Any]) -> None:
        """Write `message`, built here as plain JSON-RPC, to the client, framed as pygls frames its
        own messages; for answers pygls cannot give because it never understood the request."""
        if self.writer is None:
            log.error("cannot send a message: no transport")
            return
        body = encode_json(message)
        bodies_log.info("Sending data: %s", body)
        written = self.writer.write(frame(body))
        if inspect.isawaitable(written):  # a websocket's writer; stdout's is synchronous
            asyncio.ensure_future(written)  # noqa: RUF006 (as pygls does)

    def get_message_type(self, method: str) -> type[Any] | None:  # type: ignore[override]
        # Our `$/progress` values carry fields LSP's typed ProgressParams cannot hold.
        if method == types.PROGRESS:
            return None
        return super().get_message_type(method)

    @lsp_method(types.SHUTDOWN)
    def lsp_shutdown(self, *args: Any) -> Generator[Any, Any, None]:
        yield from super().lsp_shutdown(*args)
        self.shut_down = True

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams) -> Generator[Any, Any, types.InitializeResult]:
        result = yield from super().lsp_initialize(params)
        # Only what the daemon does: pygls' defaults (document sync, workspace folders) would
        # have an editor that attaches servers by file type send the daemon every open file.
        self.server_capabilities = result.capabilities = types.ServerCapabilities(
            position_encoding=result.capabilities.position_encoding,
            experimental={"llamaAgent": {**CUSTOM_CAPABILITIES["llamaAgent"], **self.announced}},
        )
        return result
