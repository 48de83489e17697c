"""The composition root: every face gets the same services from one config."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

from llama_agent.config import DaemonConfig
from llama_agent.core import open_core
from llama_agent.services.agent.loop import AgentRequest
from llama_agent.services.tools.registry import ToolSetChange

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
        tools_dirs=(tools,), cache_dir=cache_dir, config_dir=tmp_path / "config", workspace=tmp_path
    )


def test_a_one_shot_core_loads_the_tools_and_its_agent_uses_them(tmp_path: Path, cache_dir: Path) -> None:
    model = ScriptedModel([call("echo", value="hi"), answer("hi")])
    core = open_core(config_for(tmp_path, cache_dir), watch=False, model_loader=model.loader())
    try:
        assert core.watcher is None
        assert core.toolbox.workspace == tmp_path
        assert core.agent.toolbox is core.toolbox and core.agent.models is core.models
        result = asyncio.run(core.agent.run(AgentRequest("echo hi"), Recorder()))
        assert ([step.result for step in result.steps], result.answer) == (["hi"], "hi")
    finally:
        core.close()


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
        (config.tools_dirs[0] / "shout.wasm").write_bytes(tool_wasm("shout"))
        assert changed.wait(30)
        assert list(changes[0].added) == ["shout"]
    finally:
        core.close()
