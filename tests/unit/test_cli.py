"""The command line: `llama-agent tools list|invoke`, run as a user would; each subcommand's own
flags; exit codes; and the tool workers a command leaves behind (none)."""

from __future__ import annotations

import json
import os
import subprocess
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from llama_agent.cli import parse_arguments, parse_command_line, parse_key_values
from llama_agent.cli.build import BuildError
from llama_agent.cli.exits import EXIT_FAILURE, EXIT_USAGE, CommandFailed, UsageError, exit_code_for
from llama_agent.cli.options import Command
from llama_agent.cli.scaffold import ScaffoldError
from llama_agent.core import open_core
from llama_agent.runtime.models.backend import ContextOverflow, ModelError
from llama_agent.runtime.tools.grants_file import GrantsFileError
from llama_agent.runtime.tools.schema import ArgumentError
from llama_agent.services.agent.loop import InvalidRequest
from llama_agent.services.tools.registry import UnknownTool

from tests.clients import LLAMA_AGENT, run_cli
from tests.wat_tools import tool_wasm


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


# -- each subcommand takes only its own flags --------------------------------------------------------

TOOL_FLAGS = ["--tools-dir", "--trusted-tools-dir"]
HOST_FLAGS = ["--cache-dir", "--tool-timeout"]
MODEL_FLAGS = [
    "--backend",
    "--model",
    "--base-url",
    "--api-key-env",
    "--max-concurrent-runs",
    "--request-timeout",
    "--context-size",
    "--threads",
    "--seed",
]
LOGGING_FLAGS = ["--log-file", "--verbose"]
RUN_FLAGS = ["--tool", "--max-steps", "--max-tokens", "--temperature", "--tool-choice"]
# Each subcommand (with its positional arguments) and the flags its code reads.
FLAGS_OF: dict[tuple[str, ...], list[str]] = {
    ("serve",): [
        *TOOL_FLAGS,
        *HOST_FLAGS,
        *MODEL_FLAGS,
        "--lazy-model",
        "--workspace",
        "--allow-writes",
        "--stdio",
    ],
    ("acp",): [*TOOL_FLAGS, *HOST_FLAGS, *MODEL_FLAGS, "--allow-writes"],  # sessions grant their cwd
    ("mcp",): [*TOOL_FLAGS, *HOST_FLAGS, "--workspace", "--allow-writes"],  # no model: clients call
    ("run", "hi"): [*TOOL_FLAGS, *HOST_FLAGS, *MODEL_FLAGS, "--workspace", "--allow-writes", *RUN_FLAGS],
    ("prepare",): [*TOOL_FLAGS, *HOST_FLAGS, *MODEL_FLAGS],
    ("tools", "list"): [*TOOL_FLAGS, *HOST_FLAGS, "--workspace", "--json"],
    ("tools", "seal"): [*TOOL_FLAGS, *HOST_FLAGS],
    ("tools", "invoke", "echo"): [*TOOL_FLAGS, *HOST_FLAGS, "--workspace", "--json"],
    ("tools", "grant", "echo"): [*TOOL_FLAGS, *HOST_FLAGS, "--workspace", "--yes"],
    ("tools", "revoke", "echo"): TOOL_FLAGS,  # the grants file only
    ("tools", "new", "echo"): ["--lang", "--dir"],
    ("tools", "build"): ["--out", "--force"],
}
# A value each flag accepts (None: a flag without one).
VALUES: dict[str, str | None] = {
    **dict.fromkeys([*TOOL_FLAGS, "--cache-dir", "--log-file", "--dir", "--out"], "some/dir"),
    **dict.fromkeys(["--tool-timeout", "--request-timeout", "--temperature"], "1.5"),
    **dict.fromkeys(["--max-concurrent-runs", "--context-size", "--threads", "--seed"], "64"),
    **dict.fromkeys(["--max-steps", "--max-tokens"], "3"),
    **dict.fromkeys(
        ["--lazy-model", "--allow-writes", "--stdio", "--json", "--yes", "--force", "--verbose"], None
    ),
    "--backend": "llama",
    "--model": "model.gguf",
    "--base-url": "http://127.0.0.1:8080/v1",
    "--api-key-env": "KEY",
    "--workspace": ".",
    "--tool": "echo",
    "--tool-choice": "auto",
    "--lang": "js",
}
ALL_FLAGS = sorted(VALUES)


def with_value(flag: str) -> list[str]:
    value = VALUES[flag]
    return [flag] if value is None else [flag, value]


def test_the_table_names_every_flag_of_the_command_line() -> None:
    assert sorted({flag for flags in FLAGS_OF.values() for flag in flags} | set(LOGGING_FLAGS)) == ALL_FLAGS


@pytest.mark.parametrize("command", FLAGS_OF, ids=" ".join)
def test_a_subcommand_takes_its_own_flags(command: tuple[str, ...]) -> None:
    flags = [word for flag in (*FLAGS_OF[command], *LOGGING_FLAGS) for word in with_value(flag)]
    args = parse_arguments([*command, *flags])
    assert isinstance(args.subcommand, Command)


@pytest.mark.parametrize(
    ("command", "flag"),
    [(c, f) for c, own in FLAGS_OF.items() for f in ALL_FLAGS if f not in (*own, *LOGGING_FLAGS)],
    ids=lambda part: " ".join(part) if isinstance(part, tuple) else part,
)
def test_a_subcommand_refuses_the_flags_of_others(
    command: tuple[str, ...], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_arguments([*command, flag, *with_value(flag)[1:]])
    assert exited.value.code == EXIT_USAGE
    words = " ".join(word for word in command if word not in ("hi", "echo"))
    err = capsys.readouterr().err
    # The subcommand's own usage, which lists what it does take.
    assert err.startswith(f"usage: llama-agent {words} ")
    assert f"llama-agent {words}: error: unrecognized arguments: {flag}" in err


@pytest.mark.parametrize(
    ("flag", "value", "complaint"),
    [
        ("--tool-timeout", "0", "argument --tool-timeout: must be more than 0 seconds"),
        ("--tool-timeout", "nan", "argument --tool-timeout: must be more than 0 seconds"),
        ("--context-size", "8", "argument --context-size: must be at least 16"),
        ("--workspace", "no/such/dir", "argument --workspace: 'no/such/dir' is not a directory"),
    ],
)
def test_a_bad_value_is_a_usage_error_naming_the_flag(
    flag: str, value: str, complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_command_line(["serve", flag, value])
    assert exited.value.code == EXIT_USAGE
    assert complaint in capsys.readouterr().err


def test_the_flags_fill_their_sections(tmp_path: Path) -> None:
    flags = ["--trusted-tools-dir", str(tmp_path), "--tool-timeout", "3", "--context-size", "64"]
    flags += ["--lazy-model", "--cache-dir", str(tmp_path / "cache"), "-v", "--workspace", str(tmp_path)]
    config, _ = parse_command_line(["serve", *flags])
    assert (config.tools.directories, config.tools.trusted_directories) == ((), (tmp_path,))
    assert (config.tools.timeout_seconds, config.model.context_size) == (3.0, 64)
    assert (config.session.workspace, config.session.eager_model_load) == (tmp_path, False)
    assert (config.locations.cache_dir, config.logging.verbosity) == (tmp_path / "cache", 1)
    # A one-shot command is a level quieter, and works in the current directory.
    config, _ = parse_command_line(["tools", "list"])
    assert (config.logging.verbosity, config.session.workspace) == (-1, Path.cwd())
    assert config.locations.config_dir == Path(os.environ["LLAMA_AGENT_CONFIG_DIR"])


def test_a_relative_xdg_directory_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("LLAMA_AGENT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    config, _ = parse_command_line(["tools", "list"])
    assert config.locations.cache_dir == Path.home() / ".cache" / "llama-agent"
    assert "ignoring $XDG_CACHE_HOME='relative/cache': it must be an absolute path" in caplog.text


# -- exit codes: one table of exception classes ------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("nothing to revoke"), EXIT_USAGE),
        (CommandFailed("not granted"), EXIT_FAILURE),
        (UnknownTool("nope", ["echo"]), EXIT_USAGE),
        (ArgumentError("missing required argument 'value'", "value"), EXIT_USAGE),
        (InvalidRequest("maxSteps must be at least 0", "maxSteps"), EXIT_USAGE),
        (ModelError("no such model file"), EXIT_USAGE),
        (ContextOverflow(5000, 4096), EXIT_USAGE),
        (ScaffoldError("invalid tool name"), EXIT_USAGE),
        (BuildError("building failed"), EXIT_FAILURE),
        (GrantsFileError("not valid TOML"), EXIT_FAILURE),
        (PermissionError(13, "Permission denied"), EXIT_FAILURE),
        (RuntimeError("a bug"), None),  # not mapped: its traceback shows
    ],
    ids=lambda part: type(part).__name__ if isinstance(part, BaseException) else str(part),
)
def test_each_class_of_error_has_its_exit_code(error: BaseException, code: int | None) -> None:
    assert exit_code_for(error) == code


def new_tool_in_the_way(tmp_path: Path) -> list[str | Path]:
    (tmp_path / "components" / "taken").mkdir(parents=True)
    return ["tools", "new", "taken", "--dir", tmp_path / "components"]


def log_file_under_a_file(tmp_path: Path) -> list[str | Path]:
    (tmp_path / "file").write_text("")
    return ["tools", "build", tmp_path / "nothing", "--log-file", tmp_path / "file" / "log"]


@pytest.mark.parametrize(
    ("command", "code", "message"),
    [
        (lambda tmp: ["tools", "revoke", "nope"], EXIT_USAGE, "llama-agent: nope has no approval in "),
        (new_tool_in_the_way, EXIT_USAGE, "taken already exists"),
        (lambda tmp: ["tools", "build", tmp], EXIT_FAILURE, "no app.py (Python) or tool.js (JavaScript)"),
        (log_file_under_a_file, EXIT_FAILURE, "llama-agent: [Errno "),
        (
            lambda tmp: ["tools", "revoke", "nope", "--tools-dir", os.environ["LLAMA_AGENT_CONFIG_DIR"]],
            EXIT_FAILURE,
            "llama-agent: no grants file is in use",
        ),
    ],
    ids=["UsageError", "ScaffoldError", "BuildError", "OSError", "GrantsFileError"],
)
def test_a_failing_command_exits_with_its_code_and_one_line_that_says_why(
    tmp_path: Path, command: Any, code: int, message: str
) -> None:
    done = run_cli(*command(tmp_path))
    assert (done.returncode, done.stdout) == (code, "")
    assert message in done.stderr
    assert "Traceback" not in done.stderr


# -- a command that opens a core closes it ----------------------------------------------------------

WORKER_MODULE = b"llama_agent.runtime.wasm.worker"


def live_workers() -> set[int]:
    """This process's tool-worker children that are still running (Linux: /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat, cmdline = (entry / "stat").read_text(), (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        state, parent = stat.rsplit(")", 1)[1].split()[:2]  # after "pid (command name)"
        if int(parent) == os.getpid() and state != "Z" and WORKER_MODULE in cmdline:
            found.add(int(entry.name))
    return found


@pytest.mark.parametrize(
    "command", [["tools", "list"], ["tools", "invoke", "echo", "value=hi"]], ids=" ".join
)
def test_a_tools_command_leaves_no_tool_worker_running(
    bundled_tools: Path, cache_dir: Path, command: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    config, args = parse_command_line(
        [*command, "--tools-dir", str(bundled_tools), "--cache-dir", str(cache_dir)]
    )
    before = live_workers()
    # What is looked for: an open core has workers running.
    with open_core(config, watch=False):
        assert live_workers() - before
    assert live_workers() - before == set()

    assert args.subcommand.handler(config, args) == 0
    assert ("echo 1.0.0" if command[1] == "list" else "hi\n") in capfd.readouterr().out
    assert live_workers() - before == set()
