"""The composition root: every face gets the same services from one config."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from llama_agent.config import DaemonConfig, Locations, SessionSettings
from llama_agent.core import open_core
from llama_agent.services.agent.loop import AgentRequest
from llama_agent.services.sessions import NobodyToAsk
from llama_agent.services.tools.registry import ToolSetChange
from llama_agent.services.tools.settings import ToolSettings

from tests.scripted_model import ScriptedModel, answer, call
from tests.unit.test_agent_loop import Recorder
from tests.wat_tools import tool_wasm


def config_for(tmp_path: Path, cache_dir: Path) -> DaemonConfig:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "echo.wasm").write_bytes(tool_wasm("echo"))
    # Written a while ago: a file written just now is left for the next look, still being written.
    os.utime(tools / "echo.wasm", (time.time() - 60, time.time() - 60))
    return DaemonConfig(
        tools=ToolSettings((tools,)),
        locations=Locations(cache_dir, config_dir=tmp_path / "config"),
        session=SessionSettings(workspace=tmp_path),
    )


def test_a_one_shot_core_loads_the_tools_and_its_agent_uses_them(tmp_path: Path, cache_dir: Path) -> None:
    model = ScriptedModel([call("echo", value="hi"), answer("hi")])
    core = open_core(config_for(tmp_path, cache_dir), watch=False, model_loader=model.loader())
    try:
        assert core.watcher is None
        assert core.agent.toolbox is core.toolbox and core.agent.models is core.models
        session = core.open_session(workspace=tmp_path, asker=NobodyToAsk("no one here"))
        assert session.workspace is not None and session.workspace.host == tmp_path.resolve()
        assert session.consent.allow_writes is False  # the config's default: writes are asked about
        result = asyncio.run(session.run(AgentRequest("echo hi"), Recorder()))
        assert ([step.result for step in result.steps], result.answer) == (["hi"], "hi")
    finally:
        core.close()


def test_sessions_take_the_configs_allow_writes_unless_told_otherwise(
    tmp_path: Path, cache_dir: Path
) -> None:
    config = config_for(tmp_path, cache_dir)
    approved = replace(config, session=replace(config.session, allow_writes=True))
    with open_core(approved, watch=False) as core:
        asker = NobodyToAsk("no one here")
        default = core.open_session(workspace=None, asker=asker)
        assert (default.consent.allow_writes, default.workspace) == (True, None)
        asking = core.open_session(workspace=None, asker=asker, allow_writes=False)
        assert asking.consent.allow_writes is False


def test_load_failures_are_logged_as_warnings_first_load_and_later(
    tmp_path: Path, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """For the faces whose clients hear nothing of them (ACP, MCP): a name clash among them."""
    config = config_for(tmp_path, cache_dir)
    tools = config.tools.directories[0]
    (tools / "shadow.wasm").write_bytes(tool_wasm("echo"))  # claims echo's name
    os.utime(tools / "shadow.wasm", (time.time() - 60, time.time() - 60))
    caplog.set_level(logging.WARNING, logger="llama_agent.core")
    with open_core(config, watch=True) as core:
        asyncio.run(core.warn_of_failures())
        [first] = [r.getMessage() for r in caplog.records if "cannot load tool" in r.getMessage()]
        assert f"'{tools / 'shadow.wasm'}'" in first and "is already provided by" in first
        (tools / "broken.wasm").write_bytes(b"\0asm not really")
        deadline = time.monotonic() + 30
        while not any("broken.wasm" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "a later failure was not logged"
            time.sleep(0.1)


def test_a_long_running_core_loads_in_the_background_and_reports_later_changes(
    tmp_path: Path, cache_dir: Path
) -> None:
    changes: list[ToolSetChange] = []
    changed = threading.Event()

    def on_change(change: ToolSetChange) -> None:
        changes.append(change)
        changed.set()

    config = config_for(tmp_path, cache_dir)
    core = open_core(config, watch=True)
    core.subscribe(on_change)
    try:
        assert core.watcher is not None
        assert sorted(asyncio.run(core.toolbox.ready()).tools) == ["echo"]
        (config.tools.directories[0] / "shout.wasm").write_bytes(tool_wasm("shout"))
        assert changed.wait(30)
        assert list(changes[0].added) == ["shout"]
    finally:
        core.close()
