"""pygls plumbing: plain-dict params for custom methods, our capabilities in `initialize`,
JSON-RPC's rules for what a client may send, with an answer for every request that breaks them,
and the daemon's errors as LSP's (`lsp_error`)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Generator
from concurrent.futures import Future
from typing import Any

import attrs
import cattrs
from lsprotocol import types
from pydantic import ValidationError
from pygls.exceptions import JsonRpcException
from pygls.protocol import LanguageServerProtocol, default_converter, lsp_method
from pygls.protocol.json_rpc import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
    MsgId,
)

from llama_agent import __version__
from llama_agent.common.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    QUOTA_EXCEEDED,
    REQUEST_CANCELLED,
    AgentError,
    MethodNotFound,
)
from llama_agent.faces.wire.jsonrpc import (
    Rejection,
    agent_error,
    brief,
    check_message,
    client_safe_error,
    encode_json,
    json_only,
    message_id,
    rejection,
)
from llama_agent.faces.wire.params import CUSTOM_METHODS, CUSTOM_NOTIFICATIONS
from llama_agent.runtime.telemetry import context as telemetry
from llama_agent.runtime.telemetry.metrics import observe_request

log = logging.getLogger(__name__)


# -vv turns pygls' loggers up to show message bodies: the bodies we send are logged there too.
bodies_log = logging.getLogger("pygls.protocol.json_rpc")


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


def _outcome(error: Any | None) -> str:
    """A request's outcome, as the metrics name it, from its error answer (None: answered)."""
    if error is None:
        return "ok"
    return _OUTCOME_OF_CODE.get(getattr(error, "code", None), "error")


_OUTCOME_OF_CODE: dict[object, str] = {REQUEST_CANCELLED: "cancelled", QUOTA_EXCEEDED: "quota"}


def lsp_error(error: AgentError) -> JsonRpcException:
    """The daemon's error as pygls answers it: its code, its message and its data."""
    return JsonRpcException(error.message, error.code, error.data)


def _explain(cause: BaseException | None) -> str:
    if isinstance(cause, cattrs.ClassValidationError):
        return "; ".join(cattrs.transform_error(cause))
    return str(cause) if cause else "unreadable message"


def frame(body: str) -> bytes:
    """`body`, JSON text in ASCII (so its length is its size), with the base protocol's headers."""
    content_type = f"{LanguageServerProtocol.CONTENT_TYPE}; charset={LanguageServerProtocol.CHARSET}"
    return f"Content-Length: {len(body)}\r\nContent-Type: {content_type}\r\n\r\n{body}".encode("ascii")


class RejectedMessage:
    """Stands for a message refused while it was being parsed (and answered, if it was a request)."""

    jsonrpc = "rejected"


class AgentProtocol(LanguageServerProtocol):
    def __init__(self, server: Any, converter: cattrs.Converter) -> None:
        super().__init__(server, converter)
        self.shut_down = False  # after `shutdown`: only `exit` is handled
        # Said in `initialize` (experimental.llamaAgent): e.g. the model the daemon is set up with.
        self.announced: dict[str, Any] = {}
        # The network face's: what `exit` does to its connection (None: end the process, as LSP says).
        self.on_exit: Callable[[], None] | None = None
        # False on a WebSocket, which carries one message per frame without the base protocol's headers.
        self.framed = True
        # The requests being handled: their method and when they arrived (for the metrics).
        self._arrived: dict[MsgId, tuple[str, float]] = {}

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
        answered (LSP's InvalidRequest), an unknown method is answered as on every face and unknown
        notifications are dropped quietly."""
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
        if method is not None and not self._has_handler(method):
            if is_request:
                self._reject(message, rejection(MethodNotFound(brief(method)), message.id))
            else:
                log.debug("ignoring the notification %r: no handler", brief(method))
            return
        if not is_request:
            super().handle_message(message)
            return
        self._arrived[message.id] = (str(method), time.perf_counter())
        # The handler's task copies this context: its logs and spans carry the request's id.
        token = telemetry.request_id.set(str(message.id))
        try:
            super().handle_message(message)
        finally:
            telemetry.request_id.reset(token)

    def _send_response(self, msg_id: MsgId, result: Any | None = None, error: Any | None = None) -> None:
        arrived = self._arrived.pop(msg_id, None)
        if arrived is not None:
            method, started = arrived
            observe_request(method, None, _outcome(error), time.perf_counter() - started)
        super()._send_response(msg_id, result, error)

    def _send_handler_result(self, future: Future[Any], *, msg_id: MsgId) -> None:
        """pygls' answer to a handled request, with the daemon's errors (and an SDK's validation
        errors) answered as every face answers them: their own code and message (`lsp_error`).
        Other exceptions stay pygls' internal errors, logged with their traceback."""
        failure = None if future.cancelled() else future.exception()
        if isinstance(failure, AgentError | ValidationError):
            mapped = lsp_error(agent_error(failure))
            mapped.__cause__ = failure
            future = Future()
            future.set_exception(mapped)
        super()._send_handler_result(future, msg_id=msg_id)

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
        written = self.writer.write(frame(body) if self.framed else body.encode("ascii"))
        if inspect.isawaitable(written):  # a websocket's writer; stdout's is synchronous
            asyncio.ensure_future(written)  # noqa: RUF006 (as pygls does)

    def get_message_type(self, method: str) -> type[Any] | None:  # type: ignore[override]
        # Our `$/progress` values carry fields LSP's typed ProgressParams cannot hold.
        if method == types.PROGRESS:
            return None
        return super().get_message_type(method)

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args: Any) -> Generator[Any, Any, None]:
        if self.on_exit is None:
            yield from super().lsp_exit(*args)
        else:
            self.on_exit()

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
