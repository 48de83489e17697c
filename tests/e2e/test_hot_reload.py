"""Hot reload over stdio: the daemon's tool set follows the files in its watched directories."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from tests.rpc import DaemonSession, RpcError, StartDaemon
from tests.wat_tools import tool_wasm

CHANGE_TIMEOUT = 30.0


def publish(directory: Path, file_name: str, wasm: bytes) -> Path:
    """The documented way to publish a tool: write beside it, then rename into place."""
    staging = directory / f".{file_name}.partial"
    staging.write_bytes(wasm)
    target = directory / file_name
    os.replace(staging, target)
    return target


async def started(start_daemon: StartDaemon, *directories: Path, trusted: bool = False) -> DaemonSession:
    """A daemon watching `directories`; `trusted`: their policies apply without asking."""
    args: list[str | Path] = []
    for directory in directories:
        args += ["--trusted-tools-dir" if trusted else "--tools-dir", directory]
    daemon = await start_daemon(*args)
    await daemon.request("tools/list")  # waits for the first load
    return daemon


async def next_change(daemon: DaemonSession, seen: int) -> dict[str, Any]:
    message = await daemon.wait_for_notification("tools/didChange", CHANGE_TIMEOUT, after=seen)
    params: dict[str, Any] = message["params"]
    return params


async def invoke_text(daemon: DaemonSession, name: str, **arguments: Any) -> str:
    result = await daemon.request("tools/invoke", {"name": name, "arguments": arguments or {"value": "v"}})
    assert result["isError"] is False, result
    text: str = result["content"][0]["text"]
    return text


async def listed(daemon: DaemonSession) -> dict[str, dict[str, Any]]:
    listing = await daemon.request("tools/list")
    return {tool["name"]: tool for tool in listing["tools"]}


async def test_added_tool_is_announced_and_callable(start_daemon: StartDaemon, tmp_path: Path) -> None:
    daemon = await started(start_daemon, tmp_path)
    seen = len(daemon.notifications)
    publish(tmp_path, "fresh.wasm", tool_wasm("fresh"))
    change = await next_change(daemon, seen)
    assert change == {"added": ["fresh"], "removed": [], "changed": [], "failed": []}
    assert await invoke_text(daemon, "fresh", value="Something to echo") == "Something to echo"


async def test_replaced_tool_serves_the_new_version(start_daemon: StartDaemon, tmp_path: Path) -> None:
    publish(tmp_path, "versioned.wasm", tool_wasm("versioned", version="1.0.0", behaviour="version"))
    daemon = await started(start_daemon, tmp_path)
    assert await invoke_text(daemon, "versioned") == "versioned 1.0.0"
    seen = len(daemon.notifications)
    publish(tmp_path, "versioned.wasm", tool_wasm("versioned", version="2.0.0", behaviour="version"))
    change = await next_change(daemon, seen)
    assert change["changed"] == ["versioned"]
    assert await invoke_text(daemon, "versioned") == "versioned 2.0.0"
    assert (await listed(daemon))["versioned"]["version"] == "2.0.0"


async def test_removed_tool_is_gone(start_daemon: StartDaemon, tmp_path: Path) -> None:
    path = publish(tmp_path, "doomed.wasm", tool_wasm("doomed"))
    daemon = await started(start_daemon, tmp_path)
    seen = len(daemon.notifications)
    path.unlink()
    assert (await next_change(daemon, seen))["removed"] == ["doomed"]
    with pytest.raises(RpcError) as raised:
        await daemon.request("tools/invoke", {"name": "doomed", "arguments": {"value": "x"}})
    assert "unknown tool 'doomed'" in raised.value.message


async def test_renamed_file_keeps_the_tool_under_its_metadata_name(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    path = publish(tmp_path, "before.wasm", tool_wasm("stable"))
    daemon = await started(start_daemon, tmp_path)
    seen = len(daemon.notifications)
    path.rename(tmp_path / "after.wasm")
    change = await next_change(daemon, seen)
    assert change["added"] == change["removed"] == []
    assert change["changed"] == ["stable"]
    assert (await listed(daemon))["stable"]["path"] == str(tmp_path / "after.wasm")
    assert await invoke_text(daemon, "stable", value="still") == "still"


async def test_garbage_is_reported_and_never_replaces_a_working_version(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    path = publish(tmp_path, "solid.wasm", tool_wasm("solid", behaviour="version"))
    daemon = await started(start_daemon, tmp_path)
    seen = len(daemon.notifications)
    (tmp_path / "junk.wasm").write_bytes(b"\x00asm this is not a component")
    change = await next_change(daemon, seen)
    assert [failure["path"] for failure in change["failed"]] == [str(tmp_path / "junk.wasm")]
    assert "not a valid WebAssembly component" in change["failed"][0]["error"]
    log = await daemon.wait_for_notification(
        "window/logMessage", CHANGE_TIMEOUT, after=seen, where=lambda params: "junk.wasm" in params["message"]
    )
    assert "not a valid WebAssembly component" in log["params"]["message"]

    seen = len(daemon.notifications)
    path.write_bytes(b"garbage over a working tool")
    change = await next_change(daemon, seen)
    assert change["failed"][0]["path"] == str(path)
    assert change["changed"] == change["removed"] == []
    assert await invoke_text(daemon, "solid") == "solid 1.0.0"
    listing = await daemon.request("tools/list")
    assert {failure["path"] for failure in listing["failed"]} == {str(path), str(tmp_path / "junk.wasm")}


async def test_half_written_file_is_loaded_once_complete(start_daemon: StartDaemon, tmp_path: Path) -> None:
    daemon = await started(start_daemon, tmp_path)
    wasm = tool_wasm("patient")
    path = tmp_path / "patient.wasm"
    with path.open("wb") as out:  # copied in place, slowly: no atomic rename
        out.write(wasm[: len(wasm) // 2])
        out.flush()
        await asyncio.sleep(1.0)
        assert "patient" not in await listed(daemon)
        out.write(wasm[len(wasm) // 2 :])
    for _ in range(100):
        if "patient" in await listed(daemon):
            break
        await asyncio.sleep(0.1)
    assert await invoke_text(daemon, "patient", value="done") == "done"
    assert (await daemon.request("tools/list"))["failed"] == []


async def test_two_files_with_one_name_the_loser_is_reported(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon = await started(start_daemon, tmp_path)
    seen = len(daemon.notifications)
    (tmp_path / ".a").write_bytes(tool_wasm("twin", version="1.0.0", behaviour="version"))
    (tmp_path / ".b").write_bytes(tool_wasm("twin", version="2.0.0", behaviour="version"))
    os.replace(tmp_path / ".b", tmp_path / "b.wasm")
    os.replace(tmp_path / ".a", tmp_path / "a.wasm")
    failures: list[dict[str, str]] = []
    for _ in range(300):  # the two files may arrive in one change or in two
        failures = [
            failure
            for message in daemon.notifications[seen:]
            if message["method"] == "tools/didChange"
            for failure in message["params"]["failed"]
        ]
        if failures:
            break
        await asyncio.sleep(0.1)
    assert failures[0]["path"] == str(tmp_path / "b.wasm")
    assert f"already provided by {tmp_path / 'a.wasm'}" in failures[0]["error"]
    assert await invoke_text(daemon, "twin") == "twin 1.0.0"


async def test_twenty_tools_dropped_at_once_all_load(start_daemon: StartDaemon, tmp_path: Path) -> None:
    daemon = await started(start_daemon, tmp_path)
    staging = tmp_path / "staging"
    staging.mkdir()
    names = [f"bulk{i:02d}" for i in range(20)]
    for name in names:
        (staging / f"{name}.wasm").write_bytes(tool_wasm(name, behaviour="version"))
    for name in names:
        os.replace(staging / f"{name}.wasm", tmp_path / f"{name}.wasm")
    for _ in range(200):
        if set(names) <= (await listed(daemon)).keys():
            break
        await asyncio.sleep(0.1)
    added = [
        name
        for message in daemon.notifications
        if message["method"] == "tools/didChange"
        for name in message["params"]["added"]
    ]
    assert sorted(added) == names
    results = await asyncio.gather(*(invoke_text(daemon, name) for name in names))
    assert results == [f"{name} 1.0.0" for name in names]


async def test_replace_during_a_call_the_call_finishes_on_its_version(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    publish(tmp_path, "busy.wasm", tool_wasm("busy", version="1.0.0", behaviour="slow"))
    # A few seconds of work here; room for a machine several times slower, or a busy one.
    (tmp_path / "busy.policy.toml").write_text("timeout_seconds = 120\n")
    daemon = await started(start_daemon, tmp_path, trusted=True)
    seen = len(daemon.notifications)
    _, in_flight = daemon.request_future("tools/invoke", {"name": "busy", "arguments": {"value": "x"}})
    await asyncio.sleep(0.1)
    publish(tmp_path, "busy.wasm", tool_wasm("busy", version="2.0.0", behaviour="slow"))
    assert (await next_change(daemon, seen))["changed"] == ["busy"]
    assert not in_flight.done(), "the slow call should outlast the reload"
    first = await asyncio.wait_for(in_flight, 60)
    assert first["content"][0]["text"] == "busy 1.0.0"
    assert first["tool"]["version"] == "1.0.0"
    assert await invoke_text(daemon, "busy") == "busy 2.0.0"


async def test_missing_tools_directory_is_created_and_watched(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    directory = tmp_path / "not" / "yet"
    daemon = await started(start_daemon, directory)
    assert directory.is_dir()
    assert b"did not exist: created it" in daemon.stderr
    seen = len(daemon.notifications)
    publish(directory, "late.wasm", tool_wasm("late"))
    assert (await next_change(daemon, seen))["added"] == ["late"]
