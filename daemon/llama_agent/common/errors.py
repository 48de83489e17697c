"""The daemon's errors, as every face answers them: each JSON-RPC code it uses, defined here once,
and one exception hierarchy whose classes carry their code.

An `AgentError` is a failure a client is told about. Its message is for a person (what was wrong
and how to put it right) and is the same on every face; `data` holds the details a program may
read (the field at fault, the sizes that did not fit). Each face turns one into its own error
object in one place; code below the faces raises these and never builds a face's error itself.
"""

from __future__ import annotations

import math
from typing import ClassVar

# JSON-RPC 2.0's own codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# LSP's, used by every face: a request before `initialize`, a request the client cancelled.
SERVER_NOT_INITIALIZED = -32002
REQUEST_CANCELLED = -32800
# The daemon's own, the same on every face: a run cannot run because the model cannot be loaded
# (or its server failed), or because its prompt is longer than the model's context; no room for
# another session; a tenant over one of its quotas (`data` says which, and when to retry).
MODEL_UNAVAILABLE = -32010
PROMPT_TOO_LONG = -32011
TOO_MANY_SESSIONS = -32012
QUOTA_EXCEEDED = -32013

Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]
ErrorData = dict[str, Json]


class AgentError(Exception):
    """A failure a client is answered with: `code` says which kind, the message what was wrong and
    how to fix it, `data` (optional) the details a program may read."""

    code: ClassVar[int] = INTERNAL_ERROR

    def __init__(self, message: str, data: ErrorData | None = None) -> None:
        super().__init__(message)
        self.data = data

    @property
    def message(self) -> str:
        return str(self)


class MethodNotFound(AgentError):
    code = METHOD_NOT_FOUND

    def __init__(self, method: str) -> None:
        super().__init__(f"Method not found: {method}")


class InvalidParams(AgentError):
    """A request that cannot be done as asked; `field` names the part at fault, if one is."""

    code = INVALID_PARAMS

    def __init__(self, message: str, field: str | None = None, data: ErrorData | None = None) -> None:
        super().__init__(message, {**({"field": field} if field else {}), **(data or {})} or None)
        self.field = field


class NotInitialized(AgentError):
    code = SERVER_NOT_INITIALIZED

    def __init__(self, message: str = "the server is not initialized: send `initialize` first") -> None:
        super().__init__(message)


class ModelUnavailable(AgentError):
    """The model cannot be loaded or used; the message says why."""

    code = MODEL_UNAVAILABLE


class PromptTooLong(AgentError):
    """A prompt longer than the model's context: the model is fine, the request is too big."""

    code = PROMPT_TOO_LONG

    def __init__(self, prompt_tokens: int, context_size: int) -> None:
        super().__init__(
            f"the prompt ({prompt_tokens} tokens) does not fit the model's context ({context_size} "
            "tokens): shorten the prompt, offer fewer tools, or start llama-agent with a larger "
            "--context-size",
            {"promptTokens": prompt_tokens, "contextSize": context_size},
        )
        self.prompt_tokens = prompt_tokens
        self.context_size = context_size


class TooManySessions(AgentError):
    code = TOO_MANY_SESSIONS


class QuotaExceeded(AgentError):
    """A tenant over one of its quotas (`quota`: max_sessions, max_concurrent_runs,
    calls_per_minute or tokens_per_day): the request is refused, not queued, and may be sent again
    in `retry_after` seconds (whole, at least 1). `limit` says the quota as a person reads it."""

    code = QUOTA_EXCEEDED

    def __init__(self, quota: str, retry_after: float, limit: str = "") -> None:
        seconds = max(1, math.ceil(retry_after))
        shown = f" ({limit})" if limit else ""
        super().__init__(
            f"quota exceeded: {quota}{shown}; retry after {seconds} s",
            {"quota": quota, "retryAfter": seconds},
        )
        self.quota = quota
        self.retry_after = seconds


class InternalError(AgentError):
    """A failure that is the daemon's bug: the client learns only the exception's type; the
    daemon's log has the rest."""

    code = INTERNAL_ERROR

    def __init__(self, kind: str | None = None) -> None:
        detail = f" ({kind})" if kind and kind.isidentifier() else ""
        super().__init__(f"Internal error{detail}: the daemon's log has the details")
