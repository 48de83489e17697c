"""The openai backend's pieces that need no server: the request's constraint, reading a stream,
choosing the model, and the command line that selects it. (Against a real server:
tests/e2e/test_openai_backend.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daemon.cli import parse_command_line
from daemon.runtime.backend import ModelError, RemoteSettings
from daemon.runtime.openai_backend import (
    _error_message,
    _Retryable,
    _TurnStream,
    api_key,
    choose_model,
    constraint,
    tools_request,
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


def event(delta: dict[str, Any], finish: str | None = None) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def read(stream: _TurnStream, lines: list[str]) -> None:
    for line in lines:
        if stream.feed_line(line, "http://server/v1"):
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
    stream = _TurnStream("tools", heard.append, lambda _: False)
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
    stream = _TurnStream("tools", heard.append, lambda _: False)
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
    stream = _TurnStream("json_object", lambda _: None, lambda piece: "loop" in piece)
    read(
        stream, [event({"content": '{"answer": "'}), event({"content": "loop"}), event({"content": "never"})]
    )
    generation = stream.generation()
    assert generation.text == '{"answer": "loop'
    assert generation.stop_reason == "cancelled"


def test_usage_is_taken_when_the_server_sends_it() -> None:
    stream = _TurnStream("json_schema", lambda _: None, lambda _: False)
    usage = {"prompt_tokens": 900, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 850}}
    read(stream, [event({"content": "{}"}, "length"), "data: " + json.dumps({"choices": [], "usage": usage})])
    generation = stream.generation()
    assert (generation.prompt_tokens, generation.completion_tokens, generation.cached_tokens) == (900, 7, 850)
    assert generation.stop_reason == "length"


def test_an_error_event_mid_stream_is_a_failure_to_retry_or_report() -> None:
    stream = _TurnStream("json_schema", lambda _: None, lambda _: False)
    with pytest.raises(_Retryable, match="out of memory"):
        read(stream, [event({"content": "{"}), 'data: {"error": {"message": "out of memory"}}'])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"error": {"message": "model not found", "type": "invalid_request_error"}}', "model not found"),
        ('{"detail": "Not Found"}', "{'detail': 'Not Found'}"),
        ("<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        ("", "no message"),
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
    assert config.remote == RemoteSettings("http://h:8080/v1", model="qwen", api_key_env="K")
    assert config.model_settings().identity().backend == "openai"

    config, _ = parse_command_line(["serve", "--model", "acme/m-GGUF:m-Q4_K_M.gguf"])
    assert (config.model_path, config.hub_model, config.remote) == (None, "acme/m-GGUF:m-Q4_K_M.gguf", None)
    local = tmp_path / "m.gguf"
    config, _ = parse_command_line(["serve", "--model", str(local)])
    assert (config.model_path, config.hub_model) == (local, None)


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
