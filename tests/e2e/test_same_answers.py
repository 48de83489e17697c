"""The same bad input gets the same answer on every face: one row per bad input, put to the real
daemon over LSP (`serve`), ACP (`acp`) and MCP (`mcp`), each answer's code and message compared.

A row names the faces that cannot express its input, and why (ACP has no tool call of its own:
its tools run only within a prompt, which cannot name them; MCP runs no model). Where a model is
needed it is the scripted one, or none at all: no row reads what a real model writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_agent.common.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    MODEL_UNAVAILABLE,
    PROMPT_TOO_LONG,
    SERVER_NOT_INITIALIZED,
)

from tests.clients import (
    OMITTED,
    AcpClient,
    CallOutcome,
    Face,
    FaceClient,
    LspClient,
    McpClient,
    OpenFaceClient,
    RpcError,
)
from tests.scripted_model import answer
from tests.wat_tools import tool_wasm

NO_TOOL_CALLS = "ACP has no tool call of its own: its tools run only within a prompt, which cannot name them"
NO_MODEL = "MCP runs no model: an MCP client brings its own"
NO_TOOL_CHOICE = "ACP's prompt cannot name the tools it offers"
# "No arguments", as clients write it: Lua (so Neovim) encodes an empty table as [].
NO_ARGUMENTS: list[tuple[str, Any]] = [("[]", []), ("{}", {}), ("null", None), ("left out", OMITTED)]
NO_PARAMS: list[tuple[str, Any]] = [("[]", []), ("{}", {}), ("null", None), ("left out", OMITTED)]


@dataclass(frozen=True)
class Row:
    """A bad input: how to put it to a face, the code every face answers, and words its message has."""

    name: str
    ask: Callable[[FaceClient], Awaitable[Any]]
    code: int
    says: str
    cannot: dict[Face, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    code: int
    message: str
    data: Any = None


async def answer_of(row: Row, client: FaceClient) -> Answer:
    try:
        result = await row.ask(client)
    except RpcError as error:
        return Answer(error.code, error.message, error.data)
    raise AssertionError(f"{client.face} answered {row.name} with a result: {result!r}")


async def check_rows(rows: Sequence[Row], clients: dict[Face, FaceClient]) -> None:
    """Every row put to every face that can express it: each answers the row's code, and all of
    them the same message."""
    for row in rows:
        faces = [face for face in clients if face not in row.cannot]
        assert faces and set(faces) | set(row.cannot) == {"lsp", "acp", "mcp"}, row.name
        answers = {face: await answer_of(row, clients[face]) for face in faces}
        first = answers[faces[0]]
        assert first.code == row.code, (row.name, answers)
        assert row.says in first.message, (row.name, answers)
        assert all(answer == first for answer in answers.values()), (row.name, answers)
        # Nothing for the daemon's log only reaches a client: no traceback, no pydantic report.
        assert not isinstance(first.data, dict) or not first.data.keys() & {"traceback", "errors"}


def log_of(client: FaceClient) -> bytes:
    """What the client's daemon has logged so far (its stderr)."""
    if isinstance(client, LspClient):
        return bytes(client.daemon.stderr)
    assert isinstance(client, AcpClient | McpClient)
    return bytes(client.channel.stderr)


async def logged(client: FaceClient, words: bytes, timeout: float = 10.0) -> bytes:
    """The client's daemon's log once it holds `words` (it is written by a thread of its own)."""
    async with asyncio.timeout(timeout):
        while words not in log_of(client):
            await asyncio.sleep(0.05)
    return log_of(client)


def invoke(name: str, arguments: Any = OMITTED) -> Callable[[FaceClient], Awaitable[CallOutcome]]:
    return lambda client: client.invoke(name, arguments)


def request(method: str, params: Any = OMITTED) -> Callable[[FaceClient], Awaitable[Any]]:
    return lambda client: client.request(method, params)


def run(prompt: str) -> Callable[[FaceClient], Awaitable[Any]]:
    return lambda client: client.run_agent(prompt)


TOOL_ROWS = [
    Row(
        "an unknown tool",
        invoke("nope", {}),
        INVALID_PARAMS,
        "unknown tool 'nope' (available: ",
        {"acp": NO_TOOL_CALLS},
    ),
    Row(
        "an argument of the wrong type",
        invoke("echo", {"value": 5}),
        INVALID_PARAMS,
        "argument 'value': 5 is not of type 'string'",
        {"acp": NO_TOOL_CALLS},
    ),
    Row(
        "a missing argument",
        invoke("echo", {}),
        INVALID_PARAMS,
        "missing required argument 'value'",
        {"acp": NO_TOOL_CALLS},
    ),
    Row(
        "an extra argument",
        invoke("echo", {"value": "x", "extra": 1}),
        INVALID_PARAMS,
        "unexpected argument 'extra'",
        {"acp": NO_TOOL_CALLS},
    ),
    *[
        Row(
            f"no arguments as {spelling}",
            invoke("echo", arguments),
            INVALID_PARAMS,
            "missing required argument 'value'",
            {"acp": NO_TOOL_CALLS},
        )
        for spelling, arguments in NO_ARGUMENTS
    ],
    Row(
        "an unknown tool offered to a run",
        lambda client: client.run_agent("hello", tools=["nope"]),
        INVALID_PARAMS,
        "unknown tool 'nope' (available: ",
        {"acp": NO_TOOL_CHOICE, "mcp": NO_MODEL},
    ),
    Row(
        "an unknown method", request("server/discover"), METHOD_NOT_FOUND, "Method not found: server/discover"
    ),
    Row(
        "an unknown method with params",
        request("no/such/method", {"x": 1}),
        METHOD_NOT_FOUND,
        "Method not found: no/such/method",
    ),
]


async def test_bad_tool_calls_and_unknown_methods_get_the_same_answers(
    face_client: OpenFaceClient, tools_dir: Path
) -> None:
    (tools_dir / "stamp.wasm").write_bytes(tool_wasm("stamp", params=(), behaviour="version"))
    (tools_dir / "fails.wasm").write_bytes(tool_wasm("fails", params=(), behaviour="fail"))
    script: dict[str, Any] = {"turns": []}  # no row runs the model
    async with (
        face_client("lsp", "--tools-dir", tools_dir) as lsp,
        face_client("acp", "--tools-dir", tools_dir, script=script) as acp,
        face_client("mcp", "--tools-dir", tools_dir) as mcp,
    ):
        await check_rows(TOOL_ROWS, {"lsp": lsp, "acp": acp, "mcp": mcp})
        unknown = await answer_of(TOOL_ROWS[0], lsp)
        assert unknown.message == "unknown tool 'nope' (available: echo, fails, print, stamp)"
        assert unknown.data == {"tool": "nope"}

        # Params that do not fit the method: the same code, and a message naming the method (each
        # face's own: the words differ) and the field, with no validator's report in `data`.
        wrong_params: list[tuple[FaceClient, str, dict[str, Any], str]] = [
            (lsp, "tools/invoke", {"name": 5}, "name"),
            (mcp, "tools/call", {"name": 5}, "name"),
            (acp, "session/new", {"cwd": 5, "mcpServers": []}, "cwd"),
        ]
        for client, method, params, name in wrong_params:
            wrong = await answer_of(Row(method, request(method, params), INVALID_PARAMS, ""), client)
            assert wrong.code == INVALID_PARAMS and wrong.message.startswith(f"invalid params for {method}: ")
            assert name in wrong.message and wrong.data in (None, {"field": name}), wrong
        # A client's error is one warning line in the log: no traceback, no SDK's validation report.
        for client in (lsp, acp, mcp):
            log = await logged(client, b"no/such/method")
            assert b"Traceback" not in log and b"Failed to validate" not in log, log.decode()

        # No arguments, however written, is none on every face: the same result.
        for _, arguments in NO_ARGUMENTS:
            called = [await client.invoke("stamp", arguments) for client in (lsp, mcp)]
            assert {(tuple(c.texts), c.is_error) for c in called} == {(("stamp 1.0.0",), False)}, arguments
        # A tool that runs and fails is a result, not an error, on every face.
        failed = [await client.invoke("fails", {}) for client in (lsp, mcp)]
        assert {(tuple(c.texts), c.is_error) for c in failed} == {(("fails failed on purpose",), True)}
        # No params, however written, is none: the same tools.
        listed = {
            tuple(sorted(tool["name"] for tool in (await client.request("tools/list", params))["tools"]))
            for client in (lsp, mcp)
            for _, params in NO_PARAMS
        }
        assert listed == {("echo", "fails", "print", "stamp")}


async def test_empty_params_however_written_get_one_answer_on_acp(face_client: OpenFaceClient) -> None:
    """ACP's methods all take params: missing, null, [] and {} are one answer there too (its own:
    no other face has session/new; LSP's and MCP's tools/list are above)."""
    async with face_client("acp", script={"turns": []}) as acp:
        answers = [
            await answer_of(Row("", request("session/new", params), INVALID_PARAMS, ""), acp)
            for _, params in NO_PARAMS
        ]
    assert {(a.code, a.message, a.data) for a in answers} == {
        (
            INVALID_PARAMS,
            "invalid params for session/new: cwd: Field required; mcpServers: Field required",
            None,
        )
    }


BEFORE_INITIALIZE = [
    Row(
        "a request before initialize",
        lambda client: client.request(
            "session/new" if client.face == "acp" else "tools/list",
            {"cwd": "/", "mcpServers": []} if client.face == "acp" else OMITTED,
        ),
        SERVER_NOT_INITIALIZED,
        "the server is not initialized: send `initialize` first",
    ),
    Row(
        "an unknown method before initialize",
        request("server/discover"),
        METHOD_NOT_FOUND,
        "Method not found: server/discover",
    ),
]


async def test_requests_before_initialize_get_the_same_answers(face_client: OpenFaceClient) -> None:
    async with (
        face_client("lsp", initialize=False) as lsp,
        face_client("acp", initialize=False, script={"turns": []}) as acp,
        face_client("mcp", initialize=False) as mcp,
    ):
        await check_rows(BEFORE_INITIALIZE, {"lsp": lsp, "acp": acp, "mcp": mcp})


async def test_an_unusable_model_gets_the_same_answer(face_client: OpenFaceClient, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model.gguf"
    rows = [
        Row(
            "a --model that does not exist",
            run("hello"),
            MODEL_UNAVAILABLE,
            f"model file not found: {missing}",
            {"mcp": NO_MODEL},
        )
    ]
    async with (
        face_client("lsp", "--model", missing) as lsp,
        face_client("acp", "--model", missing) as acp,
    ):
        await check_rows(rows, {"lsp": lsp, "acp": acp})


async def test_a_failure_nobody_expected_is_an_internal_error_naming_only_its_type(
    face_client: OpenFaceClient, tools_dir: Path
) -> None:
    """A model that breaks in a way the daemon does not expect (a scripted turn that is no text:
    a TypeError inside the model): -32603, the exception's type and no more. MCP has no model to
    break; its handlers answer the same way (tests/unit/test_mcp_face.py)."""
    script = {"turns": [None, answer("unreachable")]}
    rows = [
        Row(
            "a failure nobody expected",
            run("hello"),
            INTERNAL_ERROR,
            "Internal error (TypeError): the daemon's log has the details",
            {"mcp": NO_MODEL},
        )
    ]
    async with (
        face_client("lsp", "--tools-dir", tools_dir, script=script) as lsp,
        face_client("acp", "--tools-dir", tools_dir, script=script) as acp,
    ):
        await check_rows(rows, {"lsp": lsp, "acp": acp})


async def test_a_prompt_too_long_for_the_context_gets_the_same_answer(
    face_client: OpenFaceClient, tools_dir: Path, default_model: Path
) -> None:
    """The embedded model with a 128-token context: the prompt does not fit before anything is
    generated (the answer is the daemon's words, not the model's)."""
    prompt = " ".join(["Please repeat this sentence back to me."] * 40)
    rows = [
        Row(
            "a prompt too long for the context",
            run(prompt),
            PROMPT_TOO_LONG,
            "does not fit the model's context (128 tokens): shorten the prompt",
            {"mcp": NO_MODEL},
        )
    ]
    async with (
        face_client("lsp", "--tools-dir", tools_dir, "--context-size", "128") as lsp,
        face_client("acp", "--tools-dir", tools_dir, "--context-size", "128") as acp,
    ):
        await check_rows(rows, {"lsp": lsp, "acp": acp})
