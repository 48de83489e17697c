"""The builder's reading of a tool's source directory: shared module paths and what a build depends on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from llama_agent.cli.build import BuildError, ComponentSource, _python_command, is_up_to_date
from llama_agent.config import REPO_ROOT


def tool_source(root: Path, manifest: str | None) -> Path:
    directory = root / "tool"
    directory.mkdir()
    (directory / "app.py").write_text("import helpers\n")
    if manifest is not None:
        (directory / "component.toml").write_text(manifest)
    return directory


def test_shared_paths_are_on_the_module_path_and_count_as_inputs(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "helpers.py").write_text("X = 1\n")
    source = ComponentSource.read(tool_source(tmp_path, 'paths = ["../shared"]\n'))
    assert source.paths == (shared.resolve(),)
    assert shared.resolve() / "helpers.py" in source.inputs()
    command = _python_command(source, tmp_path / "out.wasm")
    assert command[command.index(str(shared.resolve())) - 1] == "-p"


def test_a_changed_shared_module_makes_the_build_stale(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    helper = shared / "helpers.py"
    helper.write_text("X = 1\n")
    source = ComponentSource.read(tool_source(tmp_path, 'paths = ["../shared"]\n'))
    output = tmp_path / "tool.wasm"
    output.write_bytes(b"built")
    newest = max(path.stat().st_mtime for path in source.inputs())
    os.utime(output, (newest + 10, newest + 10))
    assert is_up_to_date(source, output)
    os.utime(helper, (newest + 20, newest + 20))
    assert not is_up_to_date(source, output)


def test_a_shared_path_that_is_not_a_directory_is_a_build_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="`paths` names no directory"):
        ComponentSource.read(tool_source(tmp_path, 'paths = ["../nowhere"]\n'))


def test_tools_target_the_0_2_contract_unless_they_ask_for_0_1(tmp_path: Path) -> None:
    assert ComponentSource.read(tool_source(tmp_path, None)).wit_dir == REPO_ROOT / "wit"
    assert "package llama-agent:tool@0.2.0;" in (REPO_ROOT / "wit" / "tool.wit").read_text()
    assert "package llama-agent:tool@0.1.0;" in (REPO_ROOT / "wit" / "v0.1" / "tool.wit").read_text()
    (tmp_path / "old").mkdir()
    old = ComponentSource.read(tool_source(tmp_path / "old", 'wit = "wit/v0.1"\n'))
    assert old.wit_dir == REPO_ROOT / "wit" / "v0.1"
