"""The path of docs/writing-tools.md, end to end: scaffold, build, hot reload, invoke, agent."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.clients import LLAMA_AGENT
from tests.rpc import StartDaemon


def llama_agent(*args: str | Path) -> str:
    done = subprocess.run(
        [LLAMA_AGENT, *map(str, args)], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("language", ["python", "js"])
async def test_a_new_tool_goes_from_scaffold_to_an_agent_call(
    start_daemon: StartDaemon, tmp_path: Path, language: str
) -> None:
    name = f"shout_{language}"
    sources, watched = tmp_path / "src", tmp_path / "tools"
    assert f"created {sources / name}" in llama_agent(
        "tools", "new", name, "--lang", language, "--dir", sources
    )

    daemon = await start_daemon("--tools-dir", watched)
    assert (await daemon.request("tools/list"))["tools"] == []
    seen = len(daemon.notifications)

    llama_agent("tools", "build", sources / name, "--out", watched)
    change = await daemon.wait_for_notification("tools/didChange", 300, after=seen)
    assert change["params"]["added"] == [name]

    result = await daemon.request("tools/invoke", {"name": name, "arguments": {"text": "Something to shout"}})
    assert result["content"] == [{"type": "text", "text": "SOMETHING TO SHOUT"}]

    # Forcing the first call makes it a guarantee: whatever text the model picks, the tool gets it
    # (unless the model never closes its string, and the turn is cut at maxTokens).
    run = await daemon.request(
        "agent/run",
        {"prompt": f"Please use {name} on 'llama'", "tools": [name], "toolChoice": name, "maxTokens": 1024},
    )
    if not run["steps"]:
        assert run["stopReason"] == "maxTokens"
        return
    first = run["steps"][0]
    assert first["tool"] == name
    assert first["isError"] is False
    assert first["result"] == first["arguments"]["text"].upper()
