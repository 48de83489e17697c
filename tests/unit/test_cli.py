"""The command-line tool host: `llama-agent tools list|invoke`, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.cli import parse_key_values
from daemon.runtime.schema import ArgumentError

LLAMA_AGENT = str(Path(sys.executable).with_name("llama-agent"))


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LLAMA_AGENT, *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )


def test_invoke_echo_prints_the_whole_string(bundled_tools: Path, cache_dir: Path) -> None:
    done = run_cli("tools", "invoke", "echo", "value=Something to echo", "--cache-dir", cache_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Something to echo\n"


def test_invoke_print_prints_what_the_tool_printed(bundled_tools: Path, cache_dir: Path) -> None:
    done = run_cli("tools", "invoke", "print", "message=a=b c", "--cache-dir", cache_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "a=b c\n"


def test_invoke_json_output_is_the_protocol_result(bundled_tools: Path, cache_dir: Path) -> None:
    done = run_cli("tools", "invoke", "echo", "value=x", "--json", "--cache-dir", cache_dir)
    assert json.loads(done.stdout)["content"] == [{"type": "text", "text": "x"}]


def test_list_shows_tools_and_their_parameters(bundled_tools: Path, cache_dir: Path) -> None:
    done = run_cli("tools", "list", "--cache-dir", cache_dir)
    assert done.returncode == 0, done.stderr
    assert "echo 1.0.0: Returns the given value unchanged." in done.stdout
    assert "    message (string, required): The text to print." in done.stdout


def test_bad_invocations_exit_2_with_a_message(bundled_tools: Path, cache_dir: Path) -> None:
    unknown = run_cli("tools", "invoke", "nope", "--cache-dir", cache_dir)
    assert unknown.returncode == 2
    assert "unknown tool 'nope'" in unknown.stderr
    missing = run_cli("tools", "invoke", "echo", "--cache-dir", cache_dir)
    assert missing.returncode == 2
    assert "missing required argument 'value'" in missing.stderr


SCHEMA = {
    "properties": {
        "n": {"type": "integer"},
        "x": {"type": "number"},
        "flag": {"type": "boolean"},
        "s": {"type": "string"},
    }
}


def test_key_values_are_typed_by_the_schema() -> None:
    parsed = parse_key_values(["n=3", "x=2.5", "flag=TRUE", "s=a=b", "other=7"], SCHEMA)
    assert parsed == {"n": 3, "x": 2.5, "flag": True, "s": "a=b", "other": "7"}


@pytest.mark.parametrize("pair", ["n=three", "flag=yes", "novalue", "=x"])
def test_key_values_that_do_not_fit_are_rejected(pair: str) -> None:
    with pytest.raises(ArgumentError):
        parse_key_values([pair], SCHEMA)
