"""The openai backend's pieces that need no server: the request's constraint, reading a stream
(and refusing what a hostile server sends), choosing the model, and the command line that
selects it. (Against a real server: tests/e2e/test_openai_backend.py; against a hostile one:
tests/e2e/test_hostile_model_server.py.)"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from llama_agent.cli import parse_command_line
from llama_agent.runtime.models.backend import ModelError, RemoteSettings, Turn
from llama_agent.runtime.models.remote import (
    MAX_LINE_BYTES,
    MAX_TOOL_CALLS,
    MAX_TURN_BYTES,
    Mode,
    ServerError,
    _error_message,
    _retry_after,
    _Retryable,
    _TurnStream,
    api_key,
    choose_model,
    constraint,
    tools_request,
    turn_byte_limit,
)

ECHO = {"type": "object", "properties": {"value": {"type": "string"}}, "required": ["value"]}
CALC = {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}
ANSWER = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def call_alternative(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"tool": {"const": name}, "arguments": schema},
        "required": ["tool"],
    }


TURN = {"oneOf": [call_alternative("echo", ECHO), call_alternative("calc", CALC), ANSWER]}


SERVER = "http://server/v1"


def event(delta: dict[str, Any], finish: str | None = None) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def turn_stream(
    mode: Mode = "json_schema",
    on_text: Callable[[str], None] = lambda _: None,
    stop_when: Callable[[str], bool] = lambda _: False,
    max_tokens: int = 256,
    cancelled: Callable[[], bool] = lambda: False,
) -> _TurnStream:
    turn = Turn([], TURN, max_tokens, on_text=on_text, stop_when=stop_when, cancelled=cancelled)
    return _TurnStream(mode, turn, SERVER)


def read(stream: _TurnStream, lines: list[str]) -> None:
    for line in lines:
        if stream.feed_line(line):
            return


def test_the_schema_goes_as_anyof_in_either_response_format() -> None:
    strict = constraint("json_schema", TURN)["response_format"]
    assert strict["type"] == "json_schema"
    assert strict["json_schema"]["schema"] == {"anyOf": TURN["oneOf"]}
    loose = constraint("json_object", TURN)["response_format"]
    assert loose == {"type": "json_object", "schema": {"anyOf": TURN["oneOf"]}}


def test_tools_carry_each_tools_schema_and_the_choice_follows_the_turn() -> None:
    request = tools_request(TURN)
    assert [(tool["function"]["name"], tool["function"]["parameters"]) for tool in request["tools"]] == [
        ("echo", ECHO),
        ("calc", CALC),
    ]
    assert request["tool_choice"] == "auto"
    assert tools_request({"oneOf": TURN["oneOf"][:2]})["tool_choice"] == "required"
    forced = tools_request(call_alternative("echo", ECHO))
    assert forced["tool_choice"] == {"type": "function", "function": {"name": "echo"}}
    assert tools_request(ANSWER) == {}  # an answer only: plain content


def test_native_content_streams_as_an_answer_turn() -> None:
    heard: list[str] = []
    stream = turn_stream("tools", heard.append)
    read(
        stream,
        [event({"role": "assistant"}), event({"content": 'Say "hi"'}), event({"content": "\n!"}, "stop")],
    )
    generation = stream.generation()
    assert json.loads(generation.text) == {"answer": 'Say "hi"\n!'}
    assert "".join(heard) == generation.text
    assert generation.stop_reason == "stop"


def test_native_tool_calls_become_a_call_turn() -> None:
    heard: list[str] = []
    stream = turn_stream("tools", heard.append)
    pieces = ['{"val', 'ue": "a b', ' c"}']
    read(
        stream,
        [event({"tool_calls": [{"index": 0, "function": {"name": "echo", "arguments": ""}}]})]
        + [event({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}) for piece in pieces]
        + [event({}, "tool_calls"), "data: [DONE]"],
    )
    generation = stream.generation()
    assert json.loads(generation.text) == {"tool": "echo", "arguments": {"value": "a b c"}}
    assert heard == [generation.text]  # passed on whole, once its arguments are complete
    assert generation.completion_tokens == 4


def test_stop_when_ends_the_turn_as_cancelled() -> None:
    stream = turn_stream("json_object", stop_when=lambda piece: "loop" in piece)
    read(
        stream, [event({"content": '{"answer": "'}), event({"content": "loop"}), event({"content": "never"})]
    )
    generation = stream.generation()
    assert generation.text == '{"answer": "loop'
    assert generation.stop_reason == "cancelled"


def test_a_cancelled_turn_ends_after_the_piece_that_finds_it_cancelled() -> None:
    heard: list[str] = []
    stream = turn_stream("json_object", heard.append, cancelled=lambda: len(heard) >= 2)
    read(stream, [event({"content": '{"answer": "'}), event({"content": "one"}), event({"content": "two"})])
    generation = stream.generation()
    assert (generation.text, generation.stop_reason) == ('{"answer": "one', "cancelled")
    assert heard == ['{"answer": "', "one"]


def test_usage_is_taken_when_the_server_sends_it() -> None:
    stream = turn_stream()
    usage = {"prompt_tokens": 900, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 850}}
    read(stream, [event({"content": "{}"}, "length"), "data: " + json.dumps({"choices": [], "usage": usage})])
    generation = stream.generation()
    assert (generation.prompt_tokens, generation.completion_tokens, generation.cached_tokens) == (900, 7, 850)
    assert generation.stop_reason == "length"


def test_an_error_event_mid_stream_is_a_failure_to_retry_or_report() -> None:
    stream = turn_stream()
    with pytest.raises(_Retryable, match="out of memory"):
        read(stream, [event({"content": "{"}), 'data: {"error": {"message": "out of memory"}}'])


def sse(lines: list[str]) -> bytes:
    return "".join(f"{line}\n\n" for line in lines).encode()


def answer_stream(pieces: int, finish: bool = True) -> bytes:
    lines = [event({"content": '{"answer": "'})] + [event({"content": f"{n} "}) for n in range(pieces)]
    return sse(lines + ([event({"content": '"}'}, "stop"), "data: [DONE]"] if finish else []))


def read_bytes(stream: _TurnStream, chunks: list[bytes]) -> bool:
    """Feeds `chunks` as a stream's body; True: the turn ended before they did."""
    for chunk in chunks:
        if stream.feed_bytes(chunk):
            return True
    stream.end_of_stream()
    return False


@pytest.mark.parametrize("size", [1, 7, 64, 4096])
def test_a_stream_is_read_the_same_whatever_its_chunks(size: int) -> None:
    body = answer_stream(30).replace(b"\n\n", b"\r\n\r\n").removesuffix(b"\r\n\r\n")  # CRLF; no last newline
    heard: list[str] = []
    stream = turn_stream(on_text=heard.append)

    read_bytes(stream, [body[i : i + size] for i in range(0, len(body), size)])

    generation = stream.generation()
    assert json.loads(generation.text) == {"answer": " ".join(str(n) for n in range(30)) + " "}
    assert "".join(heard) == generation.text
    assert stream.ended and generation.stop_reason == "stop"


@pytest.mark.parametrize("mode", ["json_schema", "tools"])
def test_max_tokens_ends_the_turn_here_whatever_the_server_sends(mode: Mode) -> None:
    heard: list[str] = []
    stream = turn_stream(mode, heard.append, max_tokens=50)
    usage = "data: " + json.dumps({"choices": [], "usage": {"completion_tokens": 3}})
    endless = answer_stream(10_000, finish=False) + sse([usage]) + answer_stream(10_000, finish=False)

    assert read_bytes(stream, [endless[i : i + 1000] for i in range(0, len(endless), 1000)])

    generation = stream.generation()
    assert (generation.stop_reason, generation.completion_tokens) == ("length", 50)
    assert len(heard) == 50 + (mode == "tools")  # the tools form closes the answer it stands for


def test_tool_call_pieces_count_towards_max_tokens() -> None:
    stream = turn_stream("tools", max_tokens=5)
    pieces = [event({"tool_calls": [{"index": 0, "function": {"name": "echo", "arguments": "{"}}]})]
    pieces += [event({"tool_calls": [{"index": 0, "function": {"arguments": " "}}]})] * 100
    read(stream, pieces)
    generation = stream.generation()
    assert (generation.stop_reason, generation.completion_tokens) == ("length", 5)


def test_a_line_that_never_ends_is_stopped_at_its_bound() -> None:
    stream = turn_stream(max_tokens=32768)
    fed = 0
    with pytest.raises(ServerError) as caught:
        for chunk in [b'data: {"choices": [{"delta": {"content": "'] + [b"x" * 65536] * 100:
            fed += len(chunk)
            stream.feed_bytes(chunk)
    assert MAX_LINE_BYTES < fed <= MAX_LINE_BYTES + 65536  # stopped at the bound, not at the end
    assert SERVER in str(caught.value) and "a line of more than 1 MiB" in str(caught.value)


def test_a_long_line_within_one_chunk_is_refused_too() -> None:
    with pytest.raises(ServerError, match="a line of more than 1 MiB"):
        turn_stream().feed_bytes(b"data: " + b"x" * MAX_LINE_BYTES + b"\n\n")


@pytest.mark.parametrize("padding", [b'data: {"choices": []}\n\n', b": keep-alive\n\n", b"\n"])
def test_a_turn_of_events_without_tokens_is_stopped_at_its_byte_bound(padding: bytes) -> None:
    stream = turn_stream(max_tokens=256)
    limit = turn_byte_limit(256)
    chunk = padding * (65536 // len(padding))
    fed = 0
    with pytest.raises(ServerError) as caught:
        while fed < 10 * limit:
            fed += len(chunk)
            stream.feed_bytes(chunk)
    assert limit < fed <= limit + len(chunk)
    assert SERVER in str(caught.value) and "one turn of at most 256 tokens" in str(caught.value)


def test_the_byte_bound_of_a_turn_follows_max_tokens_up_to_a_ceiling() -> None:
    assert turn_byte_limit(1) < turn_byte_limit(256) < turn_byte_limit(2048) <= MAX_TURN_BYTES
    assert turn_byte_limit(32768) == MAX_TURN_BYTES
    assert turn_byte_limit(256) >= 256 * 2048  # far more than a real server's events take


def call_event(call: object) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})


def choice_event(choice: object) -> str:
    return "data: " + json.dumps({"choices": [choice]})


# Events whose shape is not the OpenAI API's: each is a ServerError naming the server.
MALFORMED_EVENTS = {
    "an array": "data: [1, 2]",
    "a string": 'data: "text"',
    "a number": "data: 42",
    "null": "data: null",
    "not JSON": 'data: {"choices": [',
    "nested past the parser": "data: " + "[" * 100_000 + "]" * 100_000,
    "choices not a list": 'data: {"choices": {"0": {"delta": {}}}}',
    "a choice a string": choice_event("x"),
    "a choice null": choice_event(None),
    "delta a string": choice_event({"delta": "hi"}),
    "delta a list": choice_event({"delta": ["hi"]}),
    "content a number": choice_event({"delta": {"content": 5}}),
    "content an object": choice_event({"delta": {"content": {"text": "hi"}}}),
    "tool_calls an object": choice_event({"delta": {"tool_calls": {"index": 0}}}),
    "a tool call a number": call_event(7),
    "index a string": call_event({"index": "0", "function": {"name": "echo"}}),
    "index a fraction": call_event({"index": 1.5}),
    "index true": call_event({"index": True}),
    "index negative": call_event({"index": -1}),
    "index huge": call_event({"index": 10**30}),
    "index past the calls allowed": call_event({"index": MAX_TOOL_CALLS}),
    "function a string": call_event({"index": 0, "function": "echo"}),
    "function name a number": call_event({"index": 0, "function": {"name": 5}}),
    "arguments an object": call_event({"index": 0, "function": {"name": "echo", "arguments": {"value": 1}}}),
    "usage a list": 'data: {"choices": [], "usage": [1]}',
    "usage a string count": 'data: {"choices": [], "usage": {"prompt_tokens": "12"}}',
    "usage a fraction": 'data: {"choices": [], "usage": {"completion_tokens": 1.5}}',
    "usage NaN": 'data: {"choices": [], "usage": {"completion_tokens": NaN}}',
    "usage negative": 'data: {"choices": [], "usage": {"prompt_tokens": -3}}',
    "cached tokens a string": 'data: {"usage": {"prompt_tokens_details": {"cached_tokens": "x"}}}',
    "usage details a number": 'data: {"usage": {"prompt_tokens_details": 3}}',
    "finish_reason a number": choice_event({"delta": {}, "finish_reason": 1}),
    "finish_reason an object": choice_event({"delta": {}, "finish_reason": {"why": "stop"}}),
}


@pytest.mark.parametrize("mode", ["json_schema", "tools"])
@pytest.mark.parametrize("shape", MALFORMED_EVENTS)
def test_an_event_of_the_wrong_shape_is_a_server_error_naming_the_server(shape: str, mode: Mode) -> None:
    stream = turn_stream(mode)
    with pytest.raises(ServerError) as caught:
        read(stream, [event({"content": '{"answer": "'}), MALFORMED_EVENTS[shape], "data: [DONE]"])
    assert SERVER in str(caught.value)
    assert "OpenAI" in str(caught.value) or "not JSON" in str(caught.value)


def test_a_wrong_shape_is_named_in_the_message() -> None:
    with pytest.raises(
        ServerError, match=r"a delta's content is a string, not|a delta's content is the number 5"
    ):
        read(turn_stream(), [MALFORMED_EVENTS["content a number"]])
    with pytest.raises(ServerError, match="a tool call's index is a huge number, not a whole number"):
        read(turn_stream("tools"), [MALFORMED_EVENTS["index huge"]])


def test_absent_and_null_fields_are_what_the_api_allows() -> None:
    stream = turn_stream()
    read(
        stream,
        [
            "data: {}",
            'data: {"choices": null, "usage": null}',
            choice_event({"delta": None, "finish_reason": None}),
            choice_event({"delta": {"content": None, "tool_calls": None}}),
            event({"content": "{}"}, "stop"),
            'data: {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": null}}',
            "data: [DONE]",
        ],
    )
    generation = stream.generation()
    assert (generation.text, generation.prompt_tokens, generation.completion_tokens) == ("{}", 9, 1)


def test_pieces_cost_the_same_however_long_the_turn() -> None:
    """20,000 pieces through the stream, the runaway guard and both progress readers: linear
    work (re-reading the turn at each piece took minutes)."""
    from llama_agent.faces.lsp.progress import ReadableTurn
    from llama_agent.services.agent.turns import AnswerStream, RunawayGuard

    guard, readable, answer = RunawayGuard(), ReadableTurn(), AnswerStream()

    def listen(piece: str) -> None:
        readable.feed(piece)
        answer.feed(piece)

    stream = turn_stream(on_text=listen, stop_when=guard.feed, max_tokens=32768)
    body = answer_stream(20_000)
    started = time.process_time()
    read_bytes(stream, [body[i : i + 65536] for i in range(0, len(body), 65536)])
    spent = time.process_time() - started
    assert stream.generation().completion_tokens == 20_002
    assert answer.length == len(json.loads(stream.generation().text)["answer"])
    assert spent < 5.0, spent  # about 0.3 s; quadratic work took over 100 s


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3", 3.0), ("1000", 32.0), ("nan", None), ("inf", None), ("-5", None), ("soon", None), (None, None)],
)
def test_a_retry_after_is_a_finite_delay(value: str | None, seconds: float | None) -> None:
    delay = _retry_after(value)
    assert delay == seconds or (delay is not None and seconds is not None and math.isclose(delay, seconds))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"error": {"message": "model not found", "type": "invalid_request_error"}}', "model not found"),
        ('{"detail": "Not Found"}', "{'detail': 'Not Found'}"),
        ("<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        ("", "no message"),
        ('{"error": {"message": "\\u001b[2Jgone\\u202e"}}', "\\x1b[2Jgone\\u202e"),  # made visible
        ("[" * 100_000, "[" * 300),  # nested past the parser: the text's start
        ('{"error": {"message": "' + "m" * 100_000 + '"}}', "m" * 300),
    ],
)
def test_error_bodies(body: str, message: str) -> None:
    assert _error_message(body) == message


def test_the_model_is_one_the_server_serves() -> None:
    remote = RemoteSettings("http://server/v1")
    assert choose_model(remote, ["a", "b"]) == "a"
    assert choose_model(RemoteSettings("http://server/v1", model="b"), ["a", "b"]) == "b"
    # Servers that list nothing take any name.
    assert choose_model(RemoteSettings("http://server/v1", model="x"), []) == "x"
    with pytest.raises(ModelError, match=r"no model 'c'; it serves: a, b \(--model\)"):
        choose_model(RemoteSettings("http://server/v1", model="c"), ["a", "b"])
    with pytest.raises(ModelError, match="lists no models: name one with --model"):
        choose_model(remote, [])


def test_a_long_model_list_is_named_in_part_and_readably() -> None:
    served = ["evil\x1b[2J"] + [f"m{n}" for n in range(10_000)]
    with pytest.raises(ModelError) as caught:
        choose_model(RemoteSettings("http://server/v1", model="x"), served)
    message = str(caught.value)
    assert "evil\\x1b[2J" in message and "\x1b" not in message
    assert "(10001 in all)" in message and len(message) < 1000


def test_the_key_is_read_from_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    remote = RemoteSettings("http://server/v1", api_key_env="SERVER_KEY")
    monkeypatch.delenv("SERVER_KEY", raising=False)
    with pytest.raises(ModelError, match="SERVER_KEY"):
        api_key(remote)
    monkeypatch.setenv("SERVER_KEY", " secret\n")
    assert api_key(remote) == "secret"
    assert api_key(RemoteSettings("http://server/v1")) is None


def test_the_command_line_chooses_the_backend(tmp_path: Path) -> None:
    config, _ = parse_command_line(
        [
            "serve",
            "--backend",
            "openai",
            "--base-url",
            "http://h:8080/v1/",
            "--model",
            "qwen",
            "--api-key-env",
            "K",
        ]
    )
    assert config.model.remote == RemoteSettings("http://h:8080/v1", model="qwen", api_key_env="K")
    assert config.model.identity().backend == "openai"

    config, _ = parse_command_line(["serve", "--model", "acme/m-GGUF:m-Q4_K_M.gguf"])
    model = config.model
    assert (model.path, model.hub_reference, model.remote) == (None, "acme/m-GGUF:m-Q4_K_M.gguf", None)
    local = tmp_path / "m.gguf"
    config, _ = parse_command_line(["serve", "--model", str(local)])
    assert (config.model.path, config.model.hub_reference) == (local, None)


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--backend", "openai"], "needs --base-url"),
        (["--backend", "openai", "--base-url", "localhost:8080"], "needs --base-url"),
        (["--base-url", "http://h/v1"], "are for --backend openai"),
        (["--backend", "openai", "--base-url", "http://h/v1", "--request-timeout", "0"], "more than 0"),
    ],
)
def test_clashing_options_are_refused(
    arguments: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_command_line(["serve", *arguments])
    assert complaint in capsys.readouterr().err
