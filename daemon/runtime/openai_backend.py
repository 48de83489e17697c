"""The openai backend: a model behind an OpenAI-compatible chat-completions server.

Each turn is one streamed `POST {base_url}/chat/completions`. The turn's JSON Schema goes with it
as a structured-output constraint, in the first of three forms the server accepts (and that form
is then kept): `response_format` `json_schema` (llama-server, vLLM, Ollama, LM Studio, OpenAI),
`json_object` with a `schema` (llama-cpp-python's server), or the server's native `tools`
calling, whose calls are written back as turns. Whatever comes back is validated against the
schema before the agent sees it as a turn: a server that ignored the constraint is an error that
says so, never a call made with arguments no one checked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for

from daemon.runtime.backend import (
    ChatMessage,
    Generation,
    ModelError,
    ModelIdentity,
    ModelSettings,
    RemoteSettings,
    StopReason,
)

log = logging.getLogger(__name__)

Mode = Literal["json_schema", "json_object", "tools"]
MODES: tuple[Mode, ...] = ("json_schema", "json_object", "tools")
# Failures worth another try when no text has arrived yet: the server is busy or restarting.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0
# What a server's refusal of a request field mentions, per form of the constraint.
_MODE_FIELDS: dict[Mode, tuple[str, ...]] = {
    "json_schema": ("response_format", "json_schema"),
    "json_object": ("response_format", "json_object", "schema"),
    "tools": ("tools", "tool_choice", "function"),
}
_CONTEXT_WORDS = ("context length", "context size", "context window", "maximum context", "exceeds the")


class ServerError(ModelError):
    """The model server failed a request; the message names the server and what to check."""


class _Retryable(Exception):
    """A failure that another attempt may not meet (refused connection, 429, 5xx, broken stream)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Refused(Exception):
    """The server does not take this form of the constraint: the next form is tried."""


def connect_openai(settings: ModelSettings, cache_dir: Path) -> OpenAIBackend:
    """The `ModelLoader` of the openai backend: checks the server answers, and has the model."""
    remote = settings.remote
    if remote is None:
        raise ModelError("the openai backend needs a server: --base-url URL")
    backend = OpenAIBackend(remote, model="", api_key=api_key(remote))
    served = backend.served_models()
    backend.model = choose_model(remote, served)
    log.info("model server %s, model %s", remote.base_url, backend.model)
    return backend


def api_key(remote: RemoteSettings) -> str | None:
    if remote.api_key_env is None:
        return None
    key = os.environ.get(remote.api_key_env, "").strip()
    if not key:
        raise ModelError(
            f"the environment variable {remote.api_key_env} (--api-key-env) is not set or empty: "
            f"put the key for {remote.base_url} in it"
        )
    return key


def choose_model(remote: RemoteSettings, served: list[str]) -> str:
    if remote.model is None:
        if not served:
            raise ModelError(f"the model server at {remote.base_url} lists no models: name one with --model")
        return served[0]
    if served and remote.model not in served:
        raise ModelError(
            f"the model server at {remote.base_url} has no model {remote.model!r}; "
            f"it serves: {', '.join(served)} (--model)"
        )
    return remote.model


@dataclass
class OpenAIBackend:
    """A `ChatBackend` over one server and model. Each request has its own HTTP client, so turns
    from any event loop or thread may be in flight together."""

    remote: RemoteSettings
    model: str
    api_key: str | None = None
    # The constraint forms this server refused, learnt once per daemon.
    refused: set[Mode] = field(default_factory=set)
    mode: Mode | None = None

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity("openai", self.model, self.remote.base_url)

    @property
    def max_concurrent_runs(self) -> int:
        return self.remote.max_concurrent_runs

    @property
    def url(self) -> str:
        return self.remote.base_url.rstrip("/")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.remote.timeout_seconds, connect=min(10.0, self.remote.timeout_seconds))

    def served_models(self) -> list[str]:
        """The ids `GET /models` lists, retried like a turn while the server cannot be reached."""
        for attempt in range(self.remote.retries + 1):
            try:
                return self._models_once()
            except _Retryable as error:
                if attempt == self.remote.retries:
                    raise ServerError(str(error)) from error
                time.sleep(_backoff(attempt, error.retry_after))
        raise AssertionError("unreachable")

    def _models_once(self) -> list[str]:
        try:
            response = httpx.get(f"{self.url}/models", headers=self._headers(), timeout=self._timeout())
        except httpx.TransportError as error:
            raise _Retryable(self._unreachable(error)) from error
        if response.status_code == 404:
            raise ServerError(
                f"{self.url}/models was not found (HTTP 404): is {self.remote.base_url} the server's "
                "OpenAI-compatible base URL? It usually ends in /v1 (--base-url)"
            )
        self._check_status(response.status_code, response.headers, response.text)
        try:
            return [str(entry["id"]) for entry in response.json()["data"]]
        except (ValueError, KeyError, TypeError) as error:
            raise ServerError(
                f"{self.url}/models did not answer with an OpenAI model list: is --base-url right?"
            ) from error

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        schema: dict[str, Any],
        max_tokens: int,
        temperature: float,
        seed: int,
        on_text: Callable[[str], None],
        stop_when: Callable[[str], bool],
    ) -> Generation:
        body = {
            "model": self.model,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        first_refusal: _Refused | None = None
        for mode in self._modes():
            turn = _TurnStream(mode, on_text, stop_when)
            try:
                generation = await self._with_retries({**body, **constraint(mode, schema)}, turn)
            except _Refused as refusal:
                log.info("%s refused the %s form of the schema: %s", self.url, mode, refusal)
                self.refused.add(mode)
                first_refusal = first_refusal or refusal
                continue
            self.mode = mode
            if generation.stop_reason == "stop":
                self._validate(generation.text, schema, mode)
            return generation
        raise ServerError(
            f"the model server at {self.url} takes none of the ways to hold a turn to its schema "
            f"(response_format json_schema, json_object with a schema, tools): {first_refusal}"
        )

    def _modes(self) -> tuple[Mode, ...]:
        if self.mode is not None:
            return (self.mode,)
        return tuple(mode for mode in MODES if mode not in self.refused)

    async def _with_retries(self, body: dict[str, Any], turn: _TurnStream) -> Generation:
        for attempt in range(self.remote.retries + 1):
            try:
                return await self._stream(body, turn)
            except _Retryable as error:
                if turn.emitted:
                    raise ServerError(
                        f"the model server at {self.url} broke off a turn it had started ({error}); "
                        "nothing was run with it"
                    ) from error
                if attempt == self.remote.retries:
                    raise ServerError(f"{error} (tried {attempt + 1} times)") from error
                delay = _backoff(attempt, error.retry_after)
                log.warning("%s; trying again in %.1f s", error, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _stream(self, body: dict[str, Any], turn: _TurnStream) -> Generation:
        url = f"{self.url}/chat/completions"
        try:
            async with (
                httpx.AsyncClient(timeout=self._timeout()) as client,
                client.stream("POST", url, json=body, headers=self._headers()) as response,
            ):
                if response.status_code != 200:
                    text = (await response.aread()).decode("utf-8", "replace")
                    self._check_refusal(response.status_code, text, turn.mode)
                    self._check_status(response.status_code, response.headers, text)
                async for line in response.aiter_lines():
                    if turn.feed_line(line, self.url):
                        break
                if not turn.ended:
                    # Servers that drop a request for another (llama_cpp.server by default) just
                    # close its stream.
                    raise _Retryable(f"the model server at {self.url} ended the stream before the turn's end")
        except httpx.ConnectTimeout as error:
            raise _Retryable(self._unreachable(error)) from error
        except httpx.TimeoutException as error:
            raise ServerError(
                f"the model server at {self.url} sent nothing for {self.remote.timeout_seconds:g} s "
                f"({type(error).__name__}): is it overloaded? A slow server needs a larger --request-timeout"
            ) from error
        except httpx.TransportError as error:
            if turn.started:
                raise _Retryable(
                    f"the connection to {self.url} broke: {error or type(error).__name__}"
                ) from error
            raise _Retryable(self._unreachable(error)) from error
        return turn.generation()

    def _unreachable(self, error: Exception) -> str:
        return (
            f"cannot reach the model server at {self.url}: {error or type(error).__name__}. "
            "Is it running, and is --base-url right?"
        )

    def _check_refusal(self, status: int, text: str, mode: Mode) -> None:
        """A 4xx (or, from some servers, a 500 that is a validation error) about the fields
        this form of the constraint uses: the server does not support the form."""
        message = _error_message(text)
        lowered = message.lower()
        if status in (400, 413) and any(word in lowered for word in _CONTEXT_WORDS):
            raise ServerError(
                f"the prompt does not fit the context of the model at {self.url}: {message}. "
                "Offer fewer tools, or give the server a larger context"
            )
        if (400 <= status < 500 and status not in (401, 403, 404, 408, 429)) or (
            status >= 500 and any(word in lowered for word in _MODE_FIELDS[mode])
        ):
            raise _Refused(f"HTTP {status}: {message}")

    def _check_status(self, status: int, headers: httpx.Headers, text: str) -> None:
        if status < 400:
            return
        message = _error_message(text)
        if status in (401, 403):
            hint = (
                f"check the key in ${self.remote.api_key_env} (--api-key-env)"
                if self.remote.api_key_env
                else "it wants an API key: put it in an environment variable and name that with --api-key-env"
            )
            raise ServerError(f"the model server at {self.url} refused the request (HTTP {status}): {hint}")
        if status == 404:
            raise ServerError(
                f"the model server at {self.url} answered HTTP 404 ({message}): check --model "
                f"({self.model or 'not set'}) and --base-url"
            )
        if status in RETRYABLE_STATUS:
            raise _Retryable(
                f"the model server at {self.url} answered HTTP {status}: {message}",
                _retry_after(headers.get("retry-after")),
            )
        raise ServerError(f"the model server at {self.url} answered HTTP {status}: {message}")

    def _validate(self, text: str, schema: dict[str, Any], mode: Mode) -> None:
        try:
            turn = json.loads(text)
        except ValueError:
            problem = "it is not JSON"
        else:
            error = next(iter(_validator(schema).iter_errors(turn)), None)
            if error is None:
                return
            problem = error.message
        check = "its tools calling" if mode == "tools" else f"response_format {mode}"
        raise ServerError(
            f"the model server at {self.url} sent a turn its schema does not allow ({problem[:200]}): "
            f"check that it supports {check} (docs/backends.md); the turn was not used: {text[:200]!r}"
        )


def constraint(mode: Mode, schema: dict[str, Any]) -> dict[str, Any]:
    """The request fields that hold a turn to `schema` in `mode`."""
    # anyOf where the daemon writes oneOf: the alternatives exclude each other anyway (each has
    # its own required keys or tool name), and more servers' grammars take anyOf.
    portable = {("anyOf" if key == "oneOf" else key): value for key, value in schema.items()}
    if mode == "json_schema":
        return {
            "response_format": {"type": "json_schema", "json_schema": {"name": "turn", "schema": portable}}
        }
    if mode == "json_object":
        return {"response_format": {"type": "json_object", "schema": portable}}
    return tools_request(schema)


def tools_request(schema: dict[str, Any]) -> dict[str, Any]:
    """The turn's alternatives as native tools: one function per callable tool, and the answer
    as plain content when the turn may answer."""
    functions: list[dict[str, Any]] = []
    may_answer = False
    for alternative in schema.get("oneOf", [schema]):
        properties = alternative.get("properties", {})
        if "answer" in properties:
            may_answer = True
            continue
        name = properties["tool"]["const"]
        functions.append(
            {"type": "function", "function": {"name": name, "parameters": properties["arguments"]}}
        )
    if not functions:
        return {}
    choice: Any = "auto" if may_answer else "required"
    if not may_answer and len(functions) == 1:
        choice = {"type": "function", "function": {"name": functions[0]["function"]["name"]}}
    return {"tools": functions, "tool_choice": choice}


class _TurnStream:
    """One turn as its server-sent events arrive: the text so far, what it cost, why it ended.

    In the tools form, content is an answer and is passed on as the `{"answer": ...}` turn it
    stands for, so every listener sees turns in one format; a tool call is passed on whole once
    its arguments are complete."""

    def __init__(self, mode: Mode, on_text: Callable[[str], None], stop_when: Callable[[str], bool]) -> None:
        self.mode = mode
        self._on_text = on_text
        self._stop_when = stop_when
        self._started = time.perf_counter()
        self._first_at: float | None = None
        self._pieces: list[str] = []
        self._calls: dict[int, list[str]] = {}  # index: [name, arguments so far]
        self._deltas = 0
        self._finish: str | None = None
        self._stopped = False
        self._usage: dict[str, Any] = {}
        self.started = False  # the server answered 200 and began the stream
        self.emitted = False  # text went to a listener: another attempt would repeat it
        self.ended = False  # the server said the turn is over ([DONE], or a finish reason)

    def feed_line(self, line: str, server: str) -> bool:
        """Take one line of the event stream; True: the turn is over (done, or told to stop)."""
        self.started = True
        if not line.startswith("data:"):
            return False
        data = line[5:].strip()
        if data == "[DONE]":
            self.ended = True
            return True
        try:
            event = json.loads(data)
        except ValueError as error:
            raise ServerError(
                f"the model server at {server} sent an event that is not JSON: {data[:120]!r}"
            ) from error
        if "error" in event:
            raise _Retryable(f"the model server at {server} failed mid-stream: {_error_message(data)}")
        if isinstance(event.get("usage"), dict):
            self._usage = event["usage"]
        for choice in event.get("choices") or []:
            self._take(choice)
        self.ended = self.ended or self._stopped
        return self._stopped

    def _take(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if content:
            self._count()
            self._say(content if self.mode != "tools" else _answer_piece(content, first=not self._pieces))
            self._pieces.append(content)
        for call in delta.get("tool_calls") or []:
            self._count()
            entry = self._calls.setdefault(int(call.get("index", 0)), ["", ""])
            function = call.get("function") or {}
            entry[0] = entry[0] or function.get("name") or ""
            entry[1] += function.get("arguments") or ""
        if choice.get("finish_reason"):
            self._finish = choice["finish_reason"]
            self.ended = True

    def _count(self) -> None:
        self._deltas += 1
        if self._first_at is None:
            self._first_at = time.perf_counter()

    def _say(self, text: str) -> None:
        self.emitted = True
        self._on_text(text)
        if not self._stopped and self._stop_when(text):
            self._stopped = True

    def text(self) -> str:
        if self.mode != "tools":
            return "".join(self._pieces)
        if self._calls:
            name, arguments = self._calls[min(self._calls)]
            try:
                parsed = json.loads(arguments or "{}")
            except ValueError:
                return f'{{"tool": {json.dumps(name)}, "arguments": {arguments}}}'
            return json.dumps({"tool": name, "arguments": parsed}, ensure_ascii=False)
        return json.dumps({"answer": "".join(self._pieces)}, ensure_ascii=False)

    def generation(self) -> Generation:
        text = self.text()
        if self.mode == "tools" and not self._stopped:
            # The call, whole; or the answer's closing quote and brace.
            self._say(text if self._calls else ('{"answer": "' if not self._pieces else "") + '"}')
        stop: StopReason = "cancelled" if self._stopped else "length" if self._finish == "length" else "stop"
        cached = (self._usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        now = time.perf_counter()
        return Generation(
            text=text,
            prompt_tokens=int(self._usage.get("prompt_tokens") or 0),
            completion_tokens=int(self._usage.get("completion_tokens") or self._deltas),
            stop_reason=stop,
            seconds=now - self._started,
            cached_tokens=int(cached),
            first_token_seconds=(self._first_at or now) - self._started,
        )


def _answer_piece(content: str, first: bool) -> str:
    escaped = json.dumps(content, ensure_ascii=False)[1:-1]
    return ('{"answer": "' if first else "") + escaped


def _validator(schema: dict[str, Any]) -> Any:
    return validator_for(schema, default=Draft202012Validator)(schema)


def _error_message(text: str) -> str:
    """The message of an OpenAI-style error body (`{"error": {"message": ...}}`), or the text."""
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:300] or "no message"
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message", error) if isinstance(error, dict) else error
    return str(message).strip()[:300]


def _retry_after(value: str | None) -> float | None:
    try:
        return min(float(value), MAX_BACKOFF_SECONDS * 4) if value else None
    except ValueError:
        return None


def _backoff(attempt: int, retry_after: float | None) -> float:
    return (
        retry_after
        if retry_after is not None
        else min(FIRST_BACKOFF_SECONDS * 2**attempt, MAX_BACKOFF_SECONDS)
    )
