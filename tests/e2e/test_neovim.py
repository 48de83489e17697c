"""Neovim (headless, the PyPI build of 0.11) starts the daemon with the documented plugin
(clients/neovim) and calls its custom methods, Lua's empty tables and all."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from llama_agent.common.errors import INVALID_PARAMS
from llama_agent.config import REPO_ROOT

from tests.scripted_daemon import editor_launch
from tests.scripted_model import answer, call

NVIM = Path(sys.executable).with_name("nvim")
SESSION = Path(__file__).with_name("neovim_session.lua")


def neovim_session(tmp_path: Path, cmd: list[str], prompt: str, env: dict[str, str]) -> dict[str, Any]:
    settings = {
        "plugin_dir": str(REPO_ROOT / "clients" / "neovim"),
        "cmd": cmd,
        "cmd_env": env,
        "root_dir": str(tmp_path),
        "prompt": prompt,
    }
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    out = tmp_path / "out.json"
    subprocess.run(
        [
            str(NVIM),
            "--headless",
            "-u",
            "NONE",
            "-l",
            str(SESSION),
            str(tmp_path / "settings.json"),
            str(out),
        ],
        check=True,
        timeout=120,
        env={"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"},
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_neovim_lists_invokes_and_runs_the_agent_with_progress(
    tmp_path: Path, tools_dir: Path, cache_dir: Path, config_dir: Path
) -> None:
    script = {"turns": [call("echo", value="Something to echo"), answer("Something to echo")]}
    cmd, env = editor_launch(script, tmp_path, tools_dir, cache_dir, config_dir)
    out = neovim_session(tmp_path, cmd, "Please echo 'Something to echo'", env)

    assert out["attached"] == 0  # attached to no buffer: it reads no documents
    assert "textDocumentSync" not in out["capabilities"]
    assert {"echo", "print"} <= {tool["name"] for tool in out["listed"]["result"]["tools"]}
    assert out["echo"]["result"]["content"][0]["text"] == "Something to echo"
    assert out["no_arguments"]["err"]["code"] == INVALID_PARAMS
    assert "value" in out["no_arguments"]["err"]["message"]
    run = out["run"]["result"]
    assert (run["answer"], run["stopReason"]) == ("Something to echo", "answer")
    assert [step["tool"] for step in run["steps"]] == ["echo"]
    kinds = [value["kind"] for value in out["progress"]]
    assert kinds[0] == "begin" and kinds[-1] == "end" and "report" in kinds
    assert shutil.which(str(NVIM))
