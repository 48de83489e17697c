"""pygls plumbing: plain-dict params for custom methods, and our capabilities in `initialize`."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import attrs
import cattrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol, default_converter, lsp_method
from pygls.protocol.json_rpc import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
)

from daemon import __version__

# Advertised under `capabilities.experimental.llamaAgent` in the initialize result.
CUSTOM_CAPABILITIES: dict[str, Any] = {
    "llamaAgent": {
        "version": __version__,
        "methods": ["tools/list", "tools/invoke", "agent/run"],
        "notifications": ["tools/didChange"],
    }
}


def dict_params_converter() -> cattrs.Converter:
    """pygls' converter, except that non-LSP messages keep their params as plain dicts.

    The default turns them into namedtuples, which mangles keys such as `$schema`.
    Missing or extra top-level fields must not raise here: an exception while
    structuring happens before the request id is known and leaves the client waiting.
    """
    converter: cattrs.Converter = default_converter()  # type: ignore[no-untyped-call]
    for message_class in (JsonRPCRequestMessage, JsonRPCNotification, JsonRPCResponseMessage):
        converter.register_structure_hook(message_class, _keep_plain)
    return converter


def _keep_plain(message: dict[str, Any], cls: type) -> Any:
    names = [field.name for field in attrs.fields(cls)]
    return cls(**{name: message.get(name) for name in names})


def _explain(cause: BaseException | None) -> str:
    if isinstance(cause, cattrs.ClassValidationError):
        return "; ".join(cattrs.transform_error(cause))
    return str(cause) if cause else "unreadable message"


class RejectedMessage:
    """Stands for a request already answered with an error while it was being parsed."""

    jsonrpc = "rejected"


class AgentProtocol(LanguageServerProtocol):
    def structure_message(self, data: dict[str, Any]) -> Any:
        """Answer a request whose params do not fit its LSP type, instead of leaving the client waiting.

        pygls raises here, before the request id reaches any handler.
        """
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            if "id" not in data or "method" not in data:
                raise
            invalid = JsonRpcInvalidParams(
                f"invalid params for {data['method']}: {_explain(error.__cause__)}"
            )
            self._send_response(data["id"], error=invalid.to_response_error())
            return RejectedMessage()

    def get_message_type(self, method: str) -> type[Any] | None:  # type: ignore[override]
        # Our `$/progress` values carry fields LSP's typed ProgressParams cannot hold.
        if method == types.PROGRESS:
            return None
        return super().get_message_type(method)

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams) -> Generator[Any, Any, types.InitializeResult]:
        result = yield from super().lsp_initialize(params)
        result.capabilities.experimental = CUSTOM_CAPABILITIES
        return result
