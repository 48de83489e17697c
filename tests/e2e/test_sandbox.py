"""Hostile tools over stdio: each gets only what it is granted and cannot hurt the daemon."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.consent import ALLOW_ONCE, answer_writes
from tests.rpc import DaemonSession, StartDaemon
from tests.wat_tools import tool_wasm

MIB = 1024 * 1024


@pytest.fixture
def hostile_dir(tmp_path: Path, test_tools: Path) -> Path:
    directory = tmp_path / "tools"
    directory.mkdir()
    shutil.copy2(test_tools / "hostile.wasm", directory / "hostile.wasm")
    return directory


@pytest.fixture
def linked_dir(data_dir: Path) -> Path:
    """The directory to grant (a file inside), with symlinks pointing out of it."""
    outside = data_dir.parent / "outside.txt"
    outside.write_text("not granted")
    (data_dir / "escape").symlink_to(outside)
    (data_dir / "passwd").symlink_to("/etc/passwd")
    return data_dir


def grant(tools: Path, name: str, policy: str) -> None:
    """Write a policy beside the tool; it applies because `ready` trusts the tools directory."""
    (tools / f"{name}.policy.toml").write_text(policy)


async def ready(
    start_daemon: StartDaemon, tools: Path, env: dict[str, str] | None = None, extra: tuple[str, ...] = ()
) -> DaemonSession:
    # A trusted directory: the person confirms its policies on the command line (tests of who
    # grants are in test_grants.py).
    daemon = await start_daemon("--trusted-tools-dir", tools, *extra, env=env)
    await daemon.request("tools/list")
    return daemon


async def hostile(daemon: DaemonSession, action: str, target: str = "") -> dict[str, Any]:
    result: dict[str, Any] = await daemon.request(
        "tools/invoke", {"name": "hostile", "arguments": {"action": action, "target": target}}
    )
    return result


def text(result: dict[str, Any]) -> str:
    return str(result["content"][0]["text"])


async def test_nothing_is_granted_by_default(start_daemon: StartDaemon, hostile_dir: Path) -> None:
    daemon = await ready(start_daemon, hostile_dir, env={"SECRET_TOKEN": "hunter2"})
    listing = await daemon.request("tools/list")
    grants = listing["tools"][0]["grants"]
    assert grants == {
        "timeoutSeconds": 10.0,
        "memoryBytes": 256 * MIB,
        "memories": 1,
        "outputBytes": MIB,
        "writeBytes": 64 * MIB,
        "dirs": [],
        "env": [],
        "network": False,
    }
    assert text(await hostile(daemon, "read", "/etc/passwd")).startswith("denied:")
    assert text(await hostile(daemon, "list", "/")).startswith("denied:")
    assert text(await hostile(daemon, "environ")) == "environ: "
    assert text(await hostile(daemon, "env", "SECRET_TOKEN")) == "SECRET_TOKEN is unset"


async def test_granted_directories_and_nothing_beyond_them(
    start_daemon: StartDaemon, hostile_dir: Path, linked_dir: Path
) -> None:
    grant(hostile_dir, "hostile", f'[[dirs]]\nhost = "{linked_dir}"\nguest = "/data"\n')
    daemon = await ready(start_daemon, hostile_dir)
    tool = (await daemon.request("tools/list"))["tools"][0]
    assert tool["grants"]["dirs"] == [{"host": str(linked_dir), "guest": "/data", "mode": "ro"}]
    assert text(await hostile(daemon, "read", "/data/inside.txt")) == "read: granted content"
    for escape in (
        "/data/../outside.txt",
        "/data/escape",
        "/data/passwd",
        "/etc/passwd",
        "/data/../../etc/passwd",
    ):
        assert text(await hostile(daemon, "read", escape)).startswith("denied:"), escape
    assert text(await hostile(daemon, "write", "/data/new.txt")).startswith("denied:")
    assert not (linked_dir / "new.txt").exists()


async def test_a_granted_directory_swapped_for_a_link_is_no_longer_granted(
    start_daemon: StartDaemon, hostile_dir: Path, linked_dir: Path, tmp_path: Path
) -> None:
    """What a tool with a read-write grant on `data` could do to a grant of `data/inner`."""
    inner = linked_dir / "inner"
    inner.mkdir()
    (inner / "file.txt").write_text("inner content")
    grant(hostile_dir, "hostile", f'[[dirs]]\nhost = "{inner}"\nguest = "/inner"\n')
    daemon = await ready(start_daemon, hostile_dir)
    assert text(await hostile(daemon, "read", "/inner/file.txt")) == "read: inner content"
    inner.rename(linked_dir / "was-inner")
    inner.symlink_to("/etc")  # the granted path now leads to /etc
    refused = await hostile(daemon, "read", "/inner/passwd")
    assert refused["isError"] is True
    assert f"the granted directory {inner} is no longer the directory that was granted" in text(refused)


async def test_a_read_write_workspace_holding_the_tools_is_not_granted(
    start_daemon: StartDaemon, bundled_tools: Path, tmp_path: Path
) -> None:
    """The way a repository's own tools directory became a full escape: write_file rewriting
    another tool's policy to grant `/`."""
    workspace = tmp_path / "repo"
    tools = workspace / "tools"
    tools.mkdir(parents=True)
    for name in ("echo", "write_file"):
        shutil.copy2(bundled_tools / f"{name}.wasm", tools / f"{name}.wasm")
    (tools / "write_file.policy.toml").write_text('workspace = "rw"\n')
    (tools / "echo.policy.toml").write_text("timeout_seconds = 5\n")
    daemon = await ready(start_daemon, tools, extra=("--workspace", str(workspace)))
    listed = {tool["name"]: tool for tool in (await daemon.request("tools/list"))["tools"]}
    assert "would let the tool rewrite" in listed["write_file"]["policyError"]
    assert listed["write_file"]["grants"]["dirs"] == []
    attack = await daemon.request(
        "tools/invoke",
        {
            "name": "write_file",
            "arguments": {
                "path": "tools/echo.policy.toml",
                "content": '[[dirs]]\nhost = "/"\nguest = "/r"\n',
            },
        },
    )
    assert attack["isError"] is True
    assert (tools / "echo.policy.toml").read_text() == "timeout_seconds = 5\n"


async def test_read_write_grants_allow_writing_inside_only(
    start_daemon: StartDaemon, hostile_dir: Path, linked_dir: Path
) -> None:
    grant(hostile_dir, "hostile", f'[[dirs]]\nhost = "{linked_dir}"\nguest = "/data"\nmode = "rw"\n')
    daemon = await ready(start_daemon, hostile_dir)
    answer_writes(daemon, ALLOW_ONCE)  # the person allows each call
    assert text(await hostile(daemon, "write", "/data/new.txt")) == "wrote /data/new.txt"
    assert (linked_dir / "new.txt").read_text() == "written by a tool"
    assert text(await hostile(daemon, "write", "/data/../sneaky.txt")).startswith("denied:")
    assert not (linked_dir.parent / "sneaky.txt").exists()


async def test_only_granted_environment_variables_exist(start_daemon: StartDaemon, hostile_dir: Path) -> None:
    grant(hostile_dir, "hostile", 'env = ["GRANTED_VAR", "NOT_SET_ANYWHERE"]\n')
    daemon = await ready(start_daemon, hostile_dir, env={"GRANTED_VAR": "yes", "SECRET_TOKEN": "hunter2"})
    assert text(await hostile(daemon, "env", "GRANTED_VAR")) == "GRANTED_VAR=yes"
    assert text(await hostile(daemon, "env", "SECRET_TOKEN")) == "SECRET_TOKEN is unset"
    assert text(await hostile(daemon, "environ")) == "environ: GRANTED_VAR"


async def test_megabytes_of_output_are_truncated_and_marked(
    start_daemon: StartDaemon, hostile_dir: Path
) -> None:
    daemon = await ready(start_daemon, hostile_dir)
    result = await hostile(daemon, "print", str(5 * MIB))
    assert result["truncated"] is True
    assert len(result["stdout"]) == MIB
    assert result["content"][-1]["text"] == "[output truncated]"


async def test_memory_is_limited_by_default_and_by_policy(
    start_daemon: StartDaemon, hostile_dir: Path
) -> None:
    daemon = await ready(start_daemon, hostile_dir)
    assert text(await hostile(daemon, "allocate", str(100 * MIB))) == f"allocated {100 * MIB} bytes"
    assert text(await hostile(daemon, "allocate", str(600 * MIB))).startswith("refused")
    seen = len(daemon.notifications)
    grant(hostile_dir, "hostile", "memory_mib = 64\n")
    await daemon.wait_for_notification("tools/didChange", after=seen)
    assert (await daemon.request("tools/list"))["tools"][0]["grants"]["memoryBytes"] == 64 * MIB
    assert text(await hostile(daemon, "allocate", str(100 * MIB))).startswith("refused")


async def test_a_policy_that_does_not_parse_is_reported_and_the_defaults_apply(
    start_daemon: StartDaemon, hostile_dir: Path, linked_dir: Path
) -> None:
    grant(hostile_dir, "hostile", f'memory_mib = "lots"\n[[dirs]]\nhost = "{linked_dir}"\nguest = "/data"\n')
    daemon = await ready(start_daemon, hostile_dir)
    listing = await daemon.request("tools/list")
    tool = listing["tools"][0]
    assert "'memory_mib' must be a number" in tool["policyError"]
    assert tool["grants"]["dirs"] == []
    assert [failure["path"] for failure in listing["failed"]] == [str(hostile_dir / "hostile.policy.toml")]
    assert text(await hostile(daemon, "read", "/data/inside.txt")).startswith("denied:")


async def test_network_grants_are_refused(start_daemon: StartDaemon, hostile_dir: Path) -> None:
    grant(hostile_dir, "hostile", "network = true\n")
    daemon = await ready(start_daemon, hostile_dir)
    tool = (await daemon.request("tools/list"))["tools"][0]
    assert "network grants are not supported" in tool["policyError"]
    assert tool["grants"]["network"] is False


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [("loop", "timed out after 1 s"), ("grow", "unreachable"), ("recurse", "call stack exhausted")],
)
async def test_runaway_tools_are_stopped_while_others_keep_serving(
    start_daemon: StartDaemon, tools_dir: Path, behaviour: str, expected: str
) -> None:
    (tools_dir / "runaway.wasm").write_bytes(tool_wasm("runaway", behaviour=behaviour))
    grant(tools_dir, "runaway", "timeout_seconds = 1\n")
    daemon = await ready(start_daemon, tools_dir)
    started = time.perf_counter()
    _, runaway = daemon.request_future("tools/invoke", {"name": "runaway", "arguments": {"value": "x"}})
    echoed = await daemon.request("tools/invoke", {"name": "echo", "arguments": {"value": "alive"}})
    assert echoed["content"][0]["text"] == "alive"
    result = await asyncio.wait_for(runaway, 30)
    assert result["isError"] is True
    assert expected in text(result)
    assert time.perf_counter() - started < 1 + 2.0  # the timeout plus a small slack


async def test_a_table_bomb_is_refused_and_the_daemon_stays_small(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    (tools_dir / "tables.wasm").write_bytes(tool_wasm("tables", behaviour="grow_table"))
    daemon = await ready(start_daemon, tools_dir)
    before = daemon.rss_bytes()
    result = await daemon.request("tools/invoke", {"name": "tables", "arguments": {"value": "x"}})
    assert result["isError"] is True
    assert "unreachable" in text(result)  # table.grow was refused, so the tool gave up
    assert daemon.rss_bytes() - before < 64 * MIB


async def test_one_linear_memory_per_call_unless_granted_more(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    (tools_dir / "twice.wasm").write_bytes(tool_wasm("twice", behaviour="two_memories"))
    daemon = await ready(start_daemon, tools_dir)
    listing = await daemon.request("tools/list")
    refused = {Path(f["path"]).name: f["error"] for f in listing["failed"]}
    assert "memory count too high" in refused["twice.wasm"]  # even describe() gets one memory
    seen = len(daemon.notifications)
    grant(tools_dir, "twice", "memories = 2\n")
    change = await daemon.wait_for_notification("tools/didChange", after=seen)
    assert change["params"]["added"] == ["twice"]
    listed = {tool["name"]: tool for tool in (await daemon.request("tools/list"))["tools"]}
    assert listed["twice"]["grants"]["memories"] == 2
    allowed = await daemon.request("tools/invoke", {"name": "twice", "arguments": {"value": "x"}})
    assert (allowed["isError"], text(allowed)) == (False, "twice 1.0.0")


async def test_the_returned_text_is_capped_in_bytes(start_daemon: StartDaemon, tools_dir: Path) -> None:
    grant(tools_dir, "echo", "output_kib = 1\n")
    daemon = await ready(start_daemon, tools_dir)
    result = await daemon.request("tools/invoke", {"name": "echo", "arguments": {"value": "é" * 1000}})
    assert result["truncated"] is True
    kept = result["content"][0]["text"]
    assert kept == "é" * 512  # 1,024 bytes of two-byte characters, none cut in half


async def test_a_thousand_traps_leave_memory_flat(start_daemon: StartDaemon, tmp_path: Path) -> None:
    (tmp_path / "traps.wasm").write_bytes(tool_wasm("traps", behaviour="trap"))
    daemon = await ready(start_daemon, tmp_path)

    async def trap_many(count: int) -> None:
        for _ in range(count // 10):
            batch = [
                daemon.request("tools/invoke", {"name": "traps", "arguments": {"value": "x"}})
                for _ in range(10)
            ]
            assert all(result["isError"] for result in await asyncio.gather(*batch))

    await trap_many(200)  # warm up allocators and caches
    before = daemon.rss_bytes()
    await trap_many(1000)
    after = daemon.rss_bytes()
    assert after - before < 20 * MIB, f"RSS grew by {(after - before) / MIB:.1f} MiB"
    assert os.path.exists(f"/proc/{daemon.process.pid}")
