"""The command-line tool host: `llama-agent tools list|invoke`, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from llama_agent.cli import parse_key_values
from llama_agent.runtime.tools.schema import ArgumentError

from tests.wat_tools import tool_wasm

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


# -- outside words on the terminal ------------------------------------------------------------------

# Control characters in a tool's own words are refused when it loads (tests/unit/test_metadata.py):
# this one retitles the terminal, erases the line and reverses what follows.
REFUSED_DESCRIPTION = "Harmful.\x1b]0;owned\x07\x1b[2K\rHarmless\u202e"
# Invisible characters that are no control characters load, and are shown escaped.
SNEAKY_DESCRIPTION = "Harmful.\u2028Harmless\u200b\ufeff"
SNEAKY_PARAM = "v\u200balue"


def hidden_characters(text: str, keep: str = "\n") -> list[str]:
    hidden = ("Cc", "Cf", "Zl", "Zp", "Cs", "Cn")
    return [char for char in text if char not in keep and unicodedata.category(char) in hidden]


@pytest.fixture
def sneaky_tools(tmp_path: Path) -> Path:
    """A tool whose own words hold invisible characters, one whose words hold escapes, a plain
    echo, and a file whose name holds escapes."""
    directory = tmp_path / "tools"
    directory.mkdir()
    sneaky = tool_wasm(
        "sneaky",
        version="1.0\u2060",
        description=SNEAKY_DESCRIPTION,
        params=((SNEAKY_PARAM, "string", True),),
    )
    (directory / "sneaky.wasm").write_bytes(sneaky)
    (directory / "refused.wasm").write_bytes(tool_wasm("refused", description=REFUSED_DESCRIPTION))
    (directory / "echo.wasm").write_bytes(tool_wasm("echo"))
    (directory / "bad\x1b[2K.wasm").write_bytes(b"not a component")
    return directory


def test_list_shows_a_tools_own_words_with_their_escapes_visible(sneaky_tools: Path, cache_dir: Path) -> None:
    done = run_cli("tools", "list", "--tools-dir", sneaky_tools, "--cache-dir", cache_dir)
    assert done.returncode == 0, done.stderr
    assert (hidden_characters(done.stdout), hidden_characters(done.stderr)) == ([], [])
    assert "sneaky 1.0\\u2060: Harmful.\\u2028Harmless\\u200b\\ufeff\n" in done.stdout
    assert "    v\\u200balue (string, required): the v\\u200balue parameter\n" in done.stdout
    assert f"failed to load '{sneaky_tools}/bad\\x1b[2K.wasm': " in done.stderr
    assert f"failed to load '{sneaky_tools}/refused.wasm': " in done.stderr
    assert "control character U+001B" in done.stderr


def test_list_json_keeps_the_data_and_escapes_it_as_json(sneaky_tools: Path, cache_dir: Path) -> None:
    done = run_cli("tools", "list", "--json", "--tools-dir", sneaky_tools, "--cache-dir", cache_dir)
    assert hidden_characters(done.stdout) == []
    listing = json.loads(done.stdout)
    [sneaky] = [tool for tool in listing["tools"] if tool["name"] == "sneaky"]
    assert sneaky["description"] == SNEAKY_DESCRIPTION
    assert list(sneaky["inputSchema"]["properties"]) == [SNEAKY_PARAM]
    failed = [failure["path"] for failure in listing["failed"]]
    assert failed == [str(sneaky_tools / "bad\x1b[2K.wasm"), str(sneaky_tools / "refused.wasm")]


def run_cli_bytes(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    """As `run_cli`, but the output as it was written: no newline translation."""
    return subprocess.run([LLAMA_AGENT, *map(str, args)], capture_output=True, timeout=300, check=False)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("\x1b]0;title\x07", b"\\x1b]0;title\\x07\n"),
        ("a\n\tb\r\nover\rwritten\u202e", b"a\n\tb\r\nover\\rwritten\\u202e\n"),
        ("\x1b[2J\x1b[Hclean screen\n", b"\\x1b[2J\\x1b[Hclean screen\n"),
    ],
)
def test_invoke_shows_a_tools_output_with_lines_kept_and_escapes_visible(
    sneaky_tools: Path, cache_dir: Path, value: str, shown: bytes
) -> None:
    done = run_cli_bytes(
        "tools", "invoke", "echo", f"value={value}", "--tools-dir", sneaky_tools, "--cache-dir", cache_dir
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == shown


def test_invoke_json_keeps_the_output_and_escapes_it_as_json(sneaky_tools: Path, cache_dir: Path) -> None:
    value = "\x1b]0;title\x07\u202e"
    done = run_cli(
        "tools",
        "invoke",
        "echo",
        f"value={value}",
        "--json",
        "--tools-dir",
        sneaky_tools,
        "--cache-dir",
        cache_dir,
    )
    assert done.returncode == 0, done.stderr
    assert hidden_characters(done.stdout) == []
    assert json.loads(done.stdout)["content"] == [{"type": "text", "text": value}]


def test_invoke_errors_show_a_tools_words_with_their_escapes_visible(
    sneaky_tools: Path, cache_dir: Path
) -> None:
    done = run_cli("tools", "invoke", "sneaky", "--tools-dir", sneaky_tools, "--cache-dir", cache_dir)
    assert done.returncode == 2
    assert hidden_characters(done.stderr) == []
    assert "v\\u200balue" in done.stderr
