"""The openai backend: a model behind an OpenAI-compatible chat-completions server.

Each turn is one streamed `POST {base_url}/chat/completions`. The turn's JSON Schema goes with it
as a structured-output constraint, in the first of three forms the server accepts (and that form
is then kept): `response_format` `json_schema` (llama-server, vLLM, Ollama, LM Studio, OpenAI),
`json_object` with a `schema` (llama-cpp-python's server), or the server's native `tools`
calling, whose calls are written back as turns. Whatever comes back is validated against the
schema before the agent sees it as a turn: a server that ignored the constraint is an error that
says so, never a call made with arguments no one checked.

The server is a peer the daemon does not trust. Every read from it is bounded: the model list,
an error body, each line of a stream, and a turn's whole stream (by its `max_tokens`, and
absolutely); the pieces of a turn are counted here and the stream closed at `max_tokens`, however
many the server would send; every event's shape is checked before it is used. Each piece costs
the daemon its own size, never the turn's so far. Whatever is wrong is a `ServerError` (a
`ModelError`) that names the server and the bound or the field at fault.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import httpx
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for

from llama_agent.common.text import visible
from llama_agent.runtime.models.backend import (
    Generation,
    ModelError,
    ModelIdentity,
    ModelSettings,
    RemoteSettings,
    StopReason,
    Turn,
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

KIB = 1024
MIB = 1024 * KIB
# What the daemon reads from a server at most (see the module's docstring).
MAX_MODELS_BYTES = 4 * MIB  # the model list: room for a gateway's hundreds of models
MAX_ERROR_BYTES = 64 * KIB  # an error's body: only its message is wanted
MAX_LINE_BYTES = 1 * MIB  # one line of an event stream (one event: servers send each on one line)
# A turn's stream: this much for each token `max_tokens` allows (an event is a few hundred bytes
# for one token), plus room for the first and last events, and never more than MAX_TURN_BYTES.
TURN_BYTES_PER_TOKEN = 8 * KIB
TURN_BYTES_BASE = 1 * MIB
MAX_TURN_BYTES = 32 * MIB
MAX_TOOL_CALLS = 64  # a tool call's index in a turn is below this
MAX_TOKEN_COUNT = 2**31 - 1  # a usage count above this is not a count
MODELS_SHOWN = 20  # served model ids named in an error
# Asked for, so that a body's size on the wire is its size here (a compressed body is refused).
IDENTITY = {"Accept-Encoding": "identity"}


class ServerError(ModelError):
    """The model server failed a request; the message names the server and what to check."""


class _Retryable(Exception):
    """A failure that another attempt may not meet (refused connection, 429, 5xx, broken stream)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Refused(Exception):
    """The server does not take this form of the constraint: the next form is tried."""


class _Malformed(Exception):
    """A field of an event that is not of the type the OpenAI API gives it."""

    def __init__(self, what: str, value: object, expected: str) -> None:
        super().__init__(f"{what} is {_kind(value)}, not {expected}")


def connect_openai(settings: ModelSettings, cache_dir: Path) -> OpenAIBackend:
    """The `ModelLoader` of the openai backend: checks the server answers, and has the model."""
    remote = settings.remote
    if remote is None:
        raise ModelError("the openai backend needs a server: --base-url URL")
    backend = OpenAIBackend(remote, model="", api_key=api_key(remote))
    served = backend.served_models()
    backend.model = choose_model(remote, served)
    log.info("model server %s, model %s", remote.base_url, visible(backend.model))
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
            f"it serves: {_model_names(served)} (--model)"
        )
    return remote.model


def _model_names(served: list[str]) -> str:
    """The first MODELS_SHOWN of the ids a server listed, readable, and how many it listed."""
    shown = ", ".join(visible(name[:200]) for name in served[:MODELS_SHOWN])
    return shown if len(served) <= MODELS_SHOWN else f"{shown}, … ({len(served)} in all)"


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
        return {**IDENTITY, "Authorization": f"Bearer {self.api_key}"} if self.api_key else IDENTITY

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
        url = f"{self.url}/models"
        deadline = time.monotonic() + self.remote.timeout_seconds
        try:
            with (
                httpx.Client(timeout=self._timeout()) as client,
                client.stream("GET", url, headers=self._headers()) as response,
            ):
                if response.status_code == 404:
                    raise ServerError(
                        f"{url} was not found (HTTP 404): is {self.remote.base_url} the server's "
                        "OpenAI-compatible base URL? It usually ends in /v1 (--base-url)"
                    )
                if response.status_code != 200:
                    error = _read_capped(response, MAX_ERROR_BYTES, deadline)
                    self._check_status(response.status_code, response.headers, _text(error.body))
                listing = _read_capped(response, MAX_MODELS_BYTES, deadline)
        except httpx.TransportError as error:
            raise _Retryable(self._unreachable(error)) from error
        if listing.overflow is not None:
            raise ServerError(
                f"{url} answered with {listing.overflow}: is --base-url an OpenAI-compatible server?"
            )
        return self._model_ids(url, listing.body)

    def _model_ids(self, url: str, body: bytes) -> list[str]:
        try:
            entries = _array(_object(_json(_text(body)), "the model list").get("data"), "its data")
            return [_string(_object(entry, "a model").get("id"), "a model's id") for entry in entries]
        except _Malformed as error:
            raise ServerError(
                f"{url} did not answer with an OpenAI model list ({error}): is --base-url right?"
            ) from error

    async def chat(self, turn: Turn) -> Generation:
        body = {
            "model": self.model,
            "messages": turn.messages(),
            "max_tokens": turn.max_tokens,
            "temperature": turn.temperature,
            "seed": turn.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        first_refusal: _Refused | None = None
        for mode in self._modes():
            new_turn = partial(_TurnStream, mode, turn, self.url)
            try:
                generation = await self._with_retries({**body, **constraint(mode, turn.schema)}, new_turn)
            except _Refused as refusal:
                log.info("%s refused the %s form of the schema: %s", self.url, mode, refusal)
                self.refused.add(mode)
                first_refusal = first_refusal or refusal
                continue
            self.mode = mode
            if generation.stop_reason == "stop":
                self._validate(generation.text, turn.schema, mode)
            return generation
        raise ServerError(
            f"the model server at {self.url} takes none of the ways to hold a turn to its schema "
            f"(response_format json_schema, json_object with a schema, tools): {first_refusal}"
        )

    def _modes(self) -> tuple[Mode, ...]:
        if self.mode is not None:
            return (self.mode,)
        return tuple(mode for mode in MODES if mode not in self.refused)

    async def _with_retries(self, body: dict[str, Any], new_turn: Callable[[], _TurnStream]) -> Generation:
        """Each attempt reads into a turn of its own: nothing of a failed one is kept."""
        for attempt in range(self.remote.retries + 1):
            turn = new_turn()
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
                    text = await self._error_text(response)
                    self._check_refusal(response.status_code, text, turn.mode)
                    self._check_status(response.status_code, response.headers, text)
                if _compressed(response):
                    raise ServerError(
                        f"the model server at {self.url} sent a compressed stream, though asked for "
                        "none: is --base-url an OpenAI-compatible server?"
                    )
                async for chunk in response.aiter_raw():
                    if turn.feed_bytes(chunk):
                        break
                else:
                    turn.end_of_stream()
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

    async def _error_text(self, response: httpx.Response) -> str:
        """The start of an error's body: at most MAX_ERROR_BYTES, read for at most the request
        timeout (the rest is never read: the connection is closed)."""
        if _compressed(response):
            return "(a compressed body)"
        body = bytearray()
        try:
            async with asyncio.timeout(self.remote.timeout_seconds):
                async for chunk in response.aiter_raw():
                    body += chunk[: MAX_ERROR_BYTES - len(body)]
                    if len(body) >= MAX_ERROR_BYTES:
                        break
        except TimeoutError:
            pass  # a body that trickles: its start says enough
        return _text(bytes(body))

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
        if status < 300:
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
        except (ValueError, RecursionError):
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


@dataclass
class _Call:
    """A tool call as its pieces arrive (kept as pieces: joined once, when the turn is over)."""

    name: str = ""
    arguments: list[str] = field(default_factory=list)


class _TurnStream:
    """One turn as its server-sent events arrive: the text so far, what it cost, why it ended.

    Fed the stream's bytes as they come, it splits them into lines of at most MAX_LINE_BYTES,
    counts them against the turn's budget (`turn_byte_limit`), checks each event's shape, and
    counts the pieces: at `max_tokens` the turn is over ("length"), whatever the server says.

    In the tools form, content is an answer and is passed on as the `{"answer": ...}` turn it
    stands for, so every listener sees turns in one format; a tool call is passed on whole once
    its arguments are complete."""

    def __init__(self, mode: Mode, turn: Turn, server: str) -> None:
        self.mode = mode
        self._turn = turn
        self._server = server
        self._max_tokens = turn.max_tokens
        self._byte_limit = turn_byte_limit(turn.max_tokens)
        self._bytes = 0
        self._partial_line: list[bytes] = []  # the start of a line still arriving
        self._partial_bytes = 0
        self._started = time.perf_counter()
        self._first_at: float | None = None
        self._pieces: list[str] = []
        self._calls: dict[int, _Call] = {}
        self._deltas = 0
        self._finish: str | None = None
        self._stopped = False  # the turn's stop_when or cancelled said so
        self._cut = False  # max_tokens pieces arrived
        self._prompt_tokens = 0
        self._completion_tokens: int | None = None
        self._cached_tokens = 0
        self.started = False  # the server answered 200 and began the stream
        self.emitted = False  # text went to a listener: another attempt would repeat it
        self.ended = False  # the turn is over ([DONE], a finish reason, or max_tokens)

    @property
    def over(self) -> bool:
        """Nothing more is to be read: the stream may be closed."""
        return self._stopped or self._cut

    def feed_bytes(self, chunk: bytes) -> bool:
        """Take the next bytes of the stream; True: the turn is over (the stream is closed)."""
        self.started = True
        self._bytes += len(chunk)
        if self._bytes > self._byte_limit:
            raise ServerError(
                f"the model server at {self._server} sent more than {_size(self._byte_limit)} for "
                f"one turn of at most {self._max_tokens} tokens: it ignores max_tokens, or pads its "
                "stream; the turn was stopped"
            )
        return any(self.feed_line(_text(line)) for line in self._lines(chunk))

    def end_of_stream(self) -> None:
        """The server closed the stream: a last line without its newline is a line too."""
        if self._partial_line:
            line = b"".join(self._partial_line)
            self._partial_line, self._partial_bytes = [], 0
            self.feed_line(_text(line))

    def _lines(self, chunk: bytes) -> Iterator[bytes]:
        """The lines `chunk` completes (without their LF or CRLF); the rest is kept, and a line
        that grows past MAX_LINE_BYTES is an error, never held whole."""
        *complete, rest = chunk.split(b"\n")
        for index, line in enumerate(complete):
            if index == 0 and self._partial_line:
                line = b"".join([*self._partial_line, line])
                self._partial_line, self._partial_bytes = [], 0
            self._check_line(len(line))
            yield line.removesuffix(b"\r")
        if rest:
            self._partial_line.append(rest)
            self._partial_bytes += len(rest)
            self._check_line(self._partial_bytes)

    def _check_line(self, size: int) -> None:
        if size > MAX_LINE_BYTES:
            raise ServerError(
                f"the model server at {self._server} sent a line of more than {_size(MAX_LINE_BYTES)} "
                "in its event stream (an event is one line, and far shorter): is it an "
                "OpenAI-compatible server? The turn was stopped"
            )

    def feed_line(self, line: str) -> bool:
        """Take one line of the event stream; True: the turn is over (done, told to stop, or cut
        at max_tokens)."""
        self.started = True
        if not line.startswith("data:"):
            return False
        data = line[5:].strip()
        if data == "[DONE]":
            self.ended = True
            return True
        try:
            event = _json(data)
        except _Malformed as error:
            raise ServerError(
                f"the model server at {self._server} sent an event that is not JSON: {data[:120]!r}"
            ) from error
        if isinstance(event, dict) and "error" in event:
            raise _Retryable(f"the model server at {self._server} failed mid-stream: {_error_message(data)}")
        try:
            self._take_event(event)
        except _Malformed as error:
            raise ServerError(
                f"the model server at {self._server} sent an event that is not an OpenAI chat-completions "
                f"chunk ({error}): is it OpenAI-compatible? The event: {data[:120]!r}"
            ) from error
        self.ended = self.ended or self.over
        return self.over

    def _take_event(self, event: object) -> None:
        if not isinstance(event, dict):
            raise _Malformed("the event", event, "an object")
        self._take_usage(_optional_object(event.get("usage"), "its usage"))
        for choice in _array(event.get("choices"), "its choices"):
            if self.over:
                return
            self._take(_object(choice, "a choice"))

    def _take_usage(self, usage: dict[str, Any]) -> None:
        if not usage:
            return
        details = _optional_object(usage.get("prompt_tokens_details"), "usage.prompt_tokens_details")
        self._prompt_tokens = _token_count(usage.get("prompt_tokens"), "usage.prompt_tokens") or 0
        self._completion_tokens = _token_count(usage.get("completion_tokens"), "usage.completion_tokens")
        self._cached_tokens = _token_count(details.get("cached_tokens"), "usage's cached_tokens") or 0

    def _take(self, choice: dict[str, Any]) -> None:
        delta = _optional_object(choice.get("delta"), "a choice's delta")
        content = _optional_text(delta.get("content"), "a delta's content")
        calls = _array(delta.get("tool_calls"), "a delta's tool_calls")
        finish = _optional_text(choice.get("finish_reason"), "a choice's finish_reason")
        if content:
            self._count()
            self._say(content if self.mode != "tools" else _answer_piece(content, first=not self._pieces))
            self._pieces.append(content)
        for call in calls:
            if self.over:
                return
            self._take_call(_object(call, "a tool call"))
        if finish and not self.over:
            self._finish = finish
            self.ended = True

    def _take_call(self, call: dict[str, Any]) -> None:
        index = _token_count(call.get("index"), "a tool call's index") or 0
        if index >= MAX_TOOL_CALLS:
            raise _Malformed("a tool call's index", index, f"a number below {MAX_TOOL_CALLS}")
        function = _optional_object(call.get("function"), "a tool call's function")
        name = _optional_text(function.get("name"), "a tool call's function name")
        arguments = _optional_text(function.get("arguments"), "a tool call's function arguments")
        self._count()
        entry = self._calls.setdefault(index, _Call())
        entry.name = entry.name or name
        entry.arguments.append(arguments)

    def _count(self) -> None:
        """One more piece (a token, as servers send them); at max_tokens the turn is cut."""
        self._deltas += 1
        if self._first_at is None:
            self._first_at = time.perf_counter()
        if self._deltas >= self._max_tokens:
            self._cut = True

    def _say(self, text: str) -> None:
        self.emitted = True
        self._turn.on_text(text)
        if not self._stopped and self._turn.ends_after(text):
            self._stopped = True

    def text(self) -> str:
        if self.mode != "tools":
            return "".join(self._pieces)
        if self._calls:
            call = self._calls[min(self._calls)]
            arguments = "".join(call.arguments)
            try:
                parsed = json.loads(arguments or "{}")
            except (ValueError, RecursionError):
                return f'{{"tool": {json.dumps(call.name)}, "arguments": {arguments}}}'
            return json.dumps({"tool": call.name, "arguments": parsed}, ensure_ascii=False)
        return json.dumps({"answer": "".join(self._pieces)}, ensure_ascii=False)

    def generation(self) -> Generation:
        text = self.text()
        if self.mode == "tools" and not self._stopped:
            # The call, whole; or the answer's closing quote and brace.
            self._say(text if self._calls else ('{"answer": "' if not self._pieces else "") + '"}')
        stop: StopReason = (
            "cancelled" if self._stopped else "length" if self._cut or self._finish == "length" else "stop"
        )
        # Cut here, the server's count (if it sent one) is of an earlier point.
        counted = self._deltas if self._cut else self._completion_tokens or self._deltas
        now = time.perf_counter()
        return Generation(
            text=text,
            prompt_tokens=self._prompt_tokens,
            completion_tokens=counted,
            stop_reason=stop,
            seconds=now - self._started,
            cached_tokens=self._cached_tokens,
            first_token_seconds=(self._first_at or now) - self._started,
        )


def turn_byte_limit(max_tokens: int) -> int:
    """The most a turn's stream may send: its events for `max_tokens` tokens, generously."""
    return min(MAX_TURN_BYTES, TURN_BYTES_BASE + max_tokens * TURN_BYTES_PER_TOKEN)


@dataclass(frozen=True)
class _Capped:
    body: bytes
    overflow: str | None = None  # why the body was not read whole


def _read_capped(response: httpx.Response, limit: int, deadline: float) -> _Capped:
    """At most `limit` bytes of a response's body, read until `deadline` (`time.monotonic()`)."""
    if _compressed(response):
        return _Capped(b"", "a compressed body, though asked for none")
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk[: limit + 1 - len(body)]
        if len(body) > limit:
            return _Capped(bytes(body[:limit]), f"a body of more than {_size(limit)}")
        if time.monotonic() > deadline:
            return _Capped(bytes(body), "a body still arriving after the request timeout")
    return _Capped(bytes(body))


def _size(size: int) -> str:
    return f"{size / MIB:g} MiB" if size >= MIB else f"{size / KIB:g} KiB"


def _compressed(response: httpx.Response) -> bool:
    """Whether the body is encoded (gzip, ...): its size once decoded would be the server's choice."""
    return response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity")


def _text(body: bytes) -> str:
    return body.decode("utf-8", "replace")


def _json(text: str) -> object:
    try:
        value: object = json.loads(text)
    except ValueError as error:
        raise _Malformed("the text", text[:40], "JSON") from error
    except RecursionError as error:  # nesting too deep for the parser
        raise _Malformed("the text", text[:40], "JSON nested less deeply") from error
    return value


# The OpenAI API's types, checked: each accessor returns the value as that type or raises
# _Malformed naming the field (`what`), so no event can surprise the code that reads it.


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed(what, value, "an object")
    return value


def _optional_object(value: object, what: str) -> dict[str, Any]:
    """An object, or {} for null or absent."""
    return {} if value is None else _object(value, what)


def _array(value: object, what: str) -> list[Any]:
    """An array, or [] for null or absent."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Malformed(what, value, "an array")
    return value


def _string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _Malformed(what, value, "a string")
    return value


def _optional_text(value: object, what: str) -> str:
    """A string, or "" for null or absent."""
    return "" if value is None else _string(value, what)


def _token_count(value: object, what: str) -> int | None:
    """A count (a whole number from 0 to MAX_TOKEN_COUNT), or None for null or absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKEN_COUNT:
        raise _Malformed(what, value, "a whole number of tokens")
    return value


def _kind(value: object) -> str:
    """What a JSON value is, for a message (never the value itself: it may be huge)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return f"the number {value}" if abs(value) < 10**12 else "a huge number"
    if isinstance(value, float):
        return "a fraction"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _answer_piece(content: str, first: bool) -> str:
    escaped = json.dumps(content, ensure_ascii=False)[1:-1]
    return ('{"answer": "' if first else "") + escaped


def _validator(schema: dict[str, Any]) -> Any:
    return validator_for(schema, default=Draft202012Validator)(schema)


def _error_message(text: str) -> str:
    """The message of an OpenAI-style error body (`{"error": {"message": ...}}`), or the text;
    its start only, readable."""
    try:
        body = _json(text)
    except _Malformed:
        return visible(text.strip()[:300]) or "no message"
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message", error) if isinstance(error, dict) else error
    return visible(str(message)[:1000].strip()[:300])


def _retry_after(value: str | None) -> float | None:
    """A Retry-After header's seconds, at most four times the longest backoff."""
    try:
        seconds = float(value) if value else math.nan
    except ValueError:
        return None
    return min(seconds, MAX_BACKOFF_SECONDS * 4) if math.isfinite(seconds) and seconds >= 0 else None


def _backoff(attempt: int, retry_after: float | None) -> float:
    return (
        retry_after
        if retry_after is not None
        else min(FIRST_BACKOFF_SECONDS * 2**attempt, MAX_BACKOFF_SECONDS)
    )
