"""tools/list and tools/invoke over stdio against the real daemon and real components."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from llama_agent.common.errors import INVALID_PARAMS

from tests.rpc import RpcError, StartDaemon
from tests.wat_tools import tool_wasm


async def test_initialize_advertises_custom_methods_and_exit_after_shutdown_is_clean(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    daemon = await start_daemon("--tools-dir", tools_dir, initialize=False)
    result = await daemon.initialize()
    assert result["serverInfo"]["name"] == "llama-agent"
    methods = result["capabilities"]["experimental"]["llamaAgent"]["methods"]
    assert {"tools/list", "tools/invoke"} <= set(methods)
    assert await daemon.shutdown_and_exit() == 0


async def test_initialize_advertises_nothing_the_daemon_does_not_do(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    # An editor that attaches servers by file type would otherwise send the daemon every file.
    daemon = await start_daemon("--tools-dir", tools_dir, initialize=False)
    capabilities = (await daemon.initialize())["capabilities"]
    assert set(capabilities) <= {"positionEncoding", "experimental"}, capabilities
    assert "textDocumentSync" not in capabilities and "workspace" not in capabilities


@pytest.mark.parametrize("empty", [None, [], {}])
async def test_empty_params_mean_no_params_as_neovim_sends_them(
    start_daemon: StartDaemon, tools_dir: Path, empty: object
) -> None:
    # Lua's empty table `{}` goes out as `[]`.
    daemon = await start_daemon("--tools-dir", tools_dir)
    assert {"echo", "print"} <= {
        tool["name"] for tool in (await daemon.request("tools/list", empty))["tools"]
    }
    with pytest.raises(RpcError) as raised:
        await daemon.request("tools/invoke", {"name": "echo", "arguments": empty})
    assert raised.value.code == INVALID_PARAMS
    assert "value" in raised.value.message and "must be an object" not in raised.value.message
    with pytest.raises(RpcError) as raised:
        await daemon.request("agent/run", empty)
    assert raised.value.code == INVALID_PARAMS
    assert "prompt" in raised.value.message


async def test_a_client_that_never_reads_stderr_cannot_stall_the_daemon(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    # -vv logs every message body: far more than a pipe holds (64 KiB) once nobody reads it.
    daemon = await start_daemon("--tools-dir", tools_dir, "-vv")
    daemon.stop_reading_stderr()
    value = "x" * 2000
    for _ in range(200):
        result = await daemon.request(
            "tools/invoke", {"name": "echo", "arguments": {"value": value}}, timeout=10
        )
        assert result["content"][0]["text"] == value
    assert await daemon.shutdown_and_exit(timeout=15) == 0


async def test_a_refused_request_is_one_log_line_at_default_verbosity(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    daemon = await start_daemon("--tools-dir", tools_dir)
    with pytest.raises(RpcError):
        await daemon.request("tools/invoke", {"name": "echo", "arguments": 5})
    assert await daemon.shutdown_and_exit() == 0
    log = daemon.stderr.decode()
    assert "'arguments'" in log and "is not of type 'object'" in log
    assert "Traceback" not in log, log


async def test_exit_without_shutdown_exits_nonzero(start_daemon: StartDaemon, tools_dir: Path) -> None:
    daemon = await start_daemon("--tools-dir", tools_dir)
    daemon.notify("exit")
    assert await daemon.wait_exit() == 1


async def test_lists_bundled_0_1_and_legacy_tools_with_schemas(
    start_daemon: StartDaemon, tools_dir: Path, test_tools: Path
) -> None:
    daemon = await start_daemon("--tools-dir", tools_dir, "--tools-dir", test_tools)
    listing = await daemon.request("tools/list")
    tools = {tool["name"]: tool for tool in listing["tools"]}
    assert {"echo", "print", "Echo"} <= tools.keys()
    assert tools["echo"]["inputSchema"] == {
        "type": "object",
        "properties": {"value": {"type": "string", "description": "The text to echo back."}},
        "required": ["value"],
        "additionalProperties": False,
    }
    assert tools["echo"]["version"] == "1.0.0"
    assert tools["echo"]["description"]
    assert tools["print"]["inputSchema"]["required"] == ["message"]
    assert tools["Echo"]["world"] == "llama-cpp:tool/tool"
    # Legacy usage examples are free text, not calls: they are not read.
    assert "examples" not in tools["Echo"]
    assert tools["hostile"]["world"] == "llama-agent:tool/plugin"  # built for the 0.1 contract
    assert listing["failed"] == []


@pytest.mark.parametrize(
    "value",
    ["Something to echo", "  spaces, \"quotes\", 'ticks' and\nnew lines  ", "ünïcödé ✓ 🦙", ""],
)
async def test_echo_returns_the_whole_string(start_daemon: StartDaemon, tools_dir: Path, value: str) -> None:
    daemon = await start_daemon("--tools-dir", tools_dir)
    result = await daemon.request("tools/invoke", {"name": "echo", "arguments": {"value": value}})
    assert result["content"] == [{"type": "text", "text": value}]
    assert result["isError"] is False
    assert result["tool"] == {"name": "echo", "version": "1.0.0"}


async def test_print_returns_what_the_tool_printed(start_daemon: StartDaemon, tools_dir: Path) -> None:
    daemon = await start_daemon("--tools-dir", tools_dir)
    result = await daemon.request("tools/invoke", {"name": "print", "arguments": {"message": "hello, world"}})
    assert result["isError"] is False
    assert result["stdout"] == "hello, world\n"
    assert result["content"] == [{"type": "text", "text": "hello, world\n"}]


async def test_legacy_world_component_is_invoked_unchanged(
    start_daemon: StartDaemon, test_tools: Path
) -> None:
    daemon = await start_daemon("--tools-dir", test_tools)
    result = await daemon.request(
        "tools/invoke", {"name": "Echo", "arguments": {"value": "Something to echo"}}
    )
    assert result == {**result, "isError": False, "content": [{"type": "text", "text": "Something to echo"}]}


async def test_unknown_tool_is_invalid_params_naming_it(start_daemon: StartDaemon, tools_dir: Path) -> None:
    daemon = await start_daemon("--tools-dir", tools_dir)
    with pytest.raises(RpcError) as raised:
        await daemon.request("tools/invoke", {"name": "no-such-tool", "arguments": {}})
    assert raised.value.code == INVALID_PARAMS
    assert "no-such-tool" in raised.value.message


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"name": "echo", "arguments": {"value": 42}}, "value"),
        ({"name": "echo", "arguments": {}}, "value"),
        ({"name": "echo", "arguments": {"value": "x", "colour": "red"}}, "colour"),
        ({"name": "echo", "arguments": ["value"]}, "arguments"),
        ({"arguments": {"value": "x"}}, "name"),
        ({"name": 7}, "name"),
    ],
)
async def test_bad_arguments_are_invalid_params_naming_the_field(
    start_daemon: StartDaemon, tools_dir: Path, params: dict[str, object], named: str
) -> None:
    daemon = await start_daemon("--tools-dir", tools_dir)
    with pytest.raises(RpcError) as raised:
        await daemon.request("tools/invoke", params)
    assert raised.value.code == INVALID_PARAMS
    assert repr(named) in raised.value.message
    # Still serving afterwards.
    result = await daemon.request("tools/invoke", {"name": "echo", "arguments": {"value": "ok"}})
    assert result["content"][0]["text"] == "ok"


async def test_tool_errors_and_traps_are_results_and_the_daemon_goes_on(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    (tools_dir / "fails.wasm").write_bytes(tool_wasm("fails", behaviour="fail"))
    (tools_dir / "traps.wasm").write_bytes(tool_wasm("traps", behaviour="trap"))
    daemon = await start_daemon("--tools-dir", tools_dir)

    failed = await daemon.request("tools/invoke", {"name": "fails", "arguments": {"value": "x"}})
    assert failed["isError"] is True
    assert failed["content"] == [{"type": "text", "text": "fails failed on purpose"}]

    trapped = await daemon.request("tools/invoke", {"name": "traps", "arguments": {"value": "x"}})
    assert trapped["isError"] is True
    assert "unreachable" in trapped["content"][0]["text"]

    echoed = await daemon.request("tools/invoke", {"name": "echo", "arguments": {"value": "still here"}})
    assert echoed["content"][0]["text"] == "still here"


async def test_a_slow_tool_blocks_nothing_else(start_daemon: StartDaemon, tools_dir: Path) -> None:
    (tools_dir / "spins.wasm").write_bytes(tool_wasm("spins", behaviour="loop"))
    daemon = await start_daemon("--tools-dir", tools_dir, "--tool-timeout", "5")
    await daemon.request("tools/list")  # loaded

    _, slow = daemon.request_future("tools/invoke", {"name": "spins", "arguments": {"value": "x"}})
    listing = await daemon.request("tools/list")
    echoed = await daemon.request("tools/invoke", {"name": "echo", "arguments": {"value": "quick"}})
    assert not slow.done(), "the slow call should still be running"
    assert "spins" in {tool["name"] for tool in listing["tools"]}
    assert echoed["content"][0]["text"] == "quick"

    timed_out = await asyncio.wait_for(slow, 30)
    assert timed_out["isError"] is True
    assert timed_out["timedOut"] is True
    assert "timed out" in timed_out["content"][0]["text"]


async def test_many_requests_in_flight_each_get_their_own_answer(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    daemon = await start_daemon("--tools-dir", tools_dir)
    values = [f"message number {i}" for i in range(32)]
    futures = [
        daemon.request_future("tools/invoke", {"name": "echo", "arguments": {"value": value}})[1]
        for value in values
    ]
    results = await asyncio.wait_for(asyncio.gather(*futures), 120)
    assert [result["content"][0]["text"] for result in results] == values
