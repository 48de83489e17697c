"""Emacs (batch, Debian's 28) starts the daemon with the documented client (clients/emacs) and
calls its custom methods through Emacs' own jsonrpc library."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from llama_agent.common.errors import INVALID_PARAMS
from llama_agent.config import REPO_ROOT

from tests.scripted_daemon import editor_launch
from tests.scripted_model import answer, call

SESSION = Path(__file__).with_name("emacs_session.el")
EMACS = shutil.which("emacs")

# `make test` installs Emacs (Debian's emacs-nox); elsewhere its absence skips this test, but not in CI.
pytestmark = pytest.mark.skipif(
    EMACS is None and not os.environ.get("CI"), reason="no emacs on PATH (make test installs it)"
)


def emacs_session(tmp_path: Path, cmd: list[str], prompt: str, env: dict[str, str]) -> dict[str, Any]:
    settings = {
        "client_dir": str(REPO_ROOT / "clients" / "emacs"),
        "cmd": cmd,
        "cmd_env": [f"{name}={value}" for name, value in env.items()],
        "root_dir": str(tmp_path),
        "prompt": prompt,
    }
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    out = tmp_path / "out.json"
    subprocess.run(
        [EMACS or "emacs", "--batch", "-Q", "-l", str(SESSION), str(tmp_path / "settings.json"), str(out)],
        check=True,
        timeout=120,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_emacs_lists_invokes_and_runs_the_agent_with_progress(
    tmp_path: Path, tools_dir: Path, cache_dir: Path, config_dir: Path
) -> None:
    script = {"turns": [call("echo", value="Something to echo"), answer("Something to echo")]}
    cmd, env = editor_launch(script, tmp_path, tools_dir, cache_dir, config_dir)
    out = emacs_session(tmp_path, cmd, "Please echo 'Something to echo'", env)

    listed = {tool["name"] for tool in out["tools"]["result"]["tools"]}
    assert {"echo", "print"} <= listed
    assert {tool["name"] for tool in out["listed"]["tools"]} == listed  # M-x llama-agent-tools
    assert out["echo"]["result"]["content"][0]["text"] == "Something to echo"
    assert out["no_arguments"]["error"]["code"] == INVALID_PARAMS
    assert "value" in out["no_arguments"]["error"]["message"]
    assert out["bad_params"]["error"]["code"] == INVALID_PARAMS
    run = out["run"]
    assert (run["answer"], run["stopReason"]) == ("Something to echo", "answer")
    assert [step["tool"] for step in run["steps"]] == ["echo"]
    kinds = [value["kind"] for value in out["progress"]]
    assert kinds[0] == "begin" and kinds[-1] == "end" and "report" in kinds
    assert out["exit_code"] == 0  # shutdown, then exit
    assert out["uri"] == "file:///tmp/my%20project"  # the workspace it names at initialize
