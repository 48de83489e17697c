"""Who grants, in the toolbox: a policy only asks; trusted directories, the grants file and the
person's answers approve; everything else runs with the defaults."""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_agent.runtime.tools.grants_file import read_approvals
from llama_agent.runtime.tools.limits import Limits
from llama_agent.runtime.wasm.host import WasmHost
from llama_agent.services.consent.approvals import (
    ALLOW_ONCE,
    ALWAYS_ALLOW,
    DENY,
    GRANTS_FILE,
    THIS_SESSION,
    TRUSTED_DIRECTORY,
    Approvals,
    PendingRequest,
    Prompts,
    describe_request,
    grant_command,
    grants_file_for,
    pending_message,
    prompt_message,
    tool_words,
)
from llama_agent.services.tools.registry import Toolbox, ToolSetChange

from tests.wat_tools import tool_wasm

ASKING = 'env = ["HOME"]\ntimeout_seconds = 30\n'


@pytest.fixture
def host(tmp_path: Path) -> Iterator[WasmHost]:
    host = WasmHost(tmp_path / "cache", Limits(timeout_seconds=10))
    yield host
    host.close()


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    directory = tmp_path / "tools"
    directory.mkdir()
    (directory / "echo.wasm").write_bytes(tool_wasm("echo"))
    (directory / "echo.policy.toml").write_text(ASKING)
    return directory


@pytest.fixture
def approvals(config_dir: Path) -> Approvals:
    return Approvals(config_dir / "grants.toml")


def toolbox(host: WasmHost, tools: Path, approvals: Approvals, trusted: tuple[Path, ...] = ()) -> Toolbox:
    box = Toolbox(host, [tools], trusted_dirs=trusted, approvals=approvals)
    box.load_all()
    return box


def reconcile(box: Toolbox, *touched: Path) -> ToolSetChange:
    """A reconcile that waits out files written moments ago, as the watcher does."""
    result = box.reconcile(touched)
    change = result.change
    while result.unsettled:
        time.sleep(0.03)
        result = box.reconcile(result.unsettled)
        change = change or result.change
    return change


def pending(box: Toolbox, name: str = "echo") -> PendingRequest:
    request = box.snapshot.tools[name].pending
    assert request is not None
    return request


def test_an_unapproved_request_waits_and_the_tool_runs_with_the_defaults(
    host: WasmHost, tools: Path, approvals: Approvals
) -> None:
    box = toolbox(host, tools, approvals)
    echo = box.snapshot.tools["echo"]
    assert echo.grants == host.default_grants
    assert echo.granted_by is None
    request = pending(box)
    assert request.grants.env == ("HOME",)
    assert request.grants.limits.timeout_seconds == 30
    assert (request.name, request.path, request.loaded) == ("echo", tools / "echo.wasm", True)
    assert request.component_sha256 == echo.loaded.content_hash
    assert box.snapshot.pending == (request,)


def test_a_trusted_directory_approves_its_tools_requests(
    host: WasmHost, tools: Path, approvals: Approvals
) -> None:
    box = toolbox(host, tools, approvals, trusted=(tools,))
    echo = box.snapshot.tools["echo"]
    assert (echo.grants.env, echo.granted_by, echo.pending) == (("HOME",), TRUSTED_DIRECTORY, None)
    assert box.snapshot.pending == ()


def test_an_approval_in_the_grants_file_holds_for_that_component_and_that_request(
    host: WasmHost, tools: Path, approvals: Approvals
) -> None:
    approvals.save(pending(toolbox(host, tools, approvals)))
    box = toolbox(host, tools, approvals)
    echo = box.snapshot.tools["echo"]
    assert (echo.grants.env, echo.granted_by, echo.pending) == (("HOME",), GRANTS_FILE, None)

    (tools / "echo.wasm").write_bytes(tool_wasm("echo", version="2.0.0"))  # a replaced component
    assert reconcile(box).changed == ("echo",)
    assert box.snapshot.tools["echo"].grants == host.default_grants
    assert pending(box).component_sha256 == box.snapshot.tools["echo"].loaded.content_hash

    (tools / "echo.wasm").write_bytes(tool_wasm("echo"))  # the approved one again
    reconcile(box)
    assert box.snapshot.tools["echo"].granted_by == GRANTS_FILE
    (tools / "echo.policy.toml").write_text('env = ["HOME", "PATH"]\ntimeout_seconds = 30\n')  # a new request
    assert reconcile(box).changed == ("echo",)
    assert box.snapshot.tools["echo"].grants == host.default_grants
    assert pending(box).grants.env == ("HOME", "PATH")


def test_an_approval_written_while_the_toolbox_runs_applies_at_the_next_reconcile(
    host: WasmHost, tools: Path, approvals: Approvals, config_dir: Path
) -> None:
    box = toolbox(host, tools, approvals)
    Approvals(config_dir / "grants.toml").save(pending(box))  # another process: the command line
    change = reconcile(box)  # no file event needed: the grants file's size and mtime are checked
    assert change.changed == ("echo",)
    assert box.snapshot.tools["echo"].granted_by == GRANTS_FILE
    Approvals(config_dir / "grants.toml").revoke("echo")
    assert reconcile(box).changed == ("echo",)
    assert box.snapshot.tools["echo"].grants == host.default_grants


def test_allow_once_approves_for_this_process_only(
    host: WasmHost, tools: Path, approvals: Approvals, config_dir: Path
) -> None:
    box = toolbox(host, tools, approvals)
    approvals.allow_once(pending(box))
    assert reconcile(box, tools / "echo.wasm").changed == ("echo",)
    assert box.snapshot.tools["echo"].granted_by == THIS_SESSION
    assert box.snapshot.tools["echo"].grants.env == ("HOME",)
    assert not (config_dir / "grants.toml").exists()
    assert toolbox(host, tools, Approvals(config_dir / "grants.toml")).snapshot.tools["echo"].pending


def test_a_policy_that_only_lowers_limits_needs_no_approval(
    host: WasmHost, tools: Path, approvals: Approvals
) -> None:
    (tools / "echo.policy.toml").write_text("timeout_seconds = 1\nmemory_mib = 16\n")
    echo = toolbox(host, tools, approvals).snapshot.tools["echo"]
    assert echo.grants.limits.timeout_seconds == 1
    assert (echo.pending, echo.granted_by) == (None, None)


def test_a_tool_that_loads_only_with_its_request_is_approved_by_its_file_name(
    host: WasmHost, tools: Path, approvals: Approvals
) -> None:
    """Until it loads its name is unknown: the request carries the file's stem, and the approval
    still holds once the tool declares another name."""
    (tools / "x.wasm").write_bytes(tool_wasm("twice", behaviour="two_memories"))
    (tools / "x.policy.toml").write_text("memories = 2\n")
    box = toolbox(host, tools, approvals)
    assert "twice" not in box.snapshot.tools
    [request] = [r for r in box.snapshot.pending if r.path.name == "x.wasm"]
    assert (request.name, request.loaded) == ("x", False)
    approvals.save(request)
    assert reconcile(box).added == ("twice",)
    assert box.snapshot.tools["twice"].granted_by == GRANTS_FILE
    assert box.snapshot.tools["twice"].grants.limits.memories == 2
    assert not reconcile(box, tools / "x.wasm")  # and it stays so


def test_no_grant_may_make_the_config_directory_writable(
    host: WasmHost, tools: Path, approvals: Approvals, config_dir: Path
) -> None:
    config_dir.mkdir(parents=True)
    (tools / "echo.policy.toml").write_text(
        f'[[dirs]]\nhost = "{config_dir.parent}"\nguest = "/c"\nmode = "rw"\n'
    )
    echo = toolbox(host, tools, approvals, trusted=(tools,)).snapshot.tools["echo"]
    assert echo.policy_error is not None and "would let the tool rewrite" in echo.policy_error
    assert echo.grants.dirs == ()


def test_a_config_directory_inside_a_tools_directory_is_not_used(tmp_path: Path) -> None:
    assert grants_file_for(tmp_path / "tools" / "config", [tmp_path / "tools"]) is None
    assert grants_file_for(tmp_path / "config", [tmp_path / "tools"]) == tmp_path / "config" / "grants.toml"


# -- asking the person ---------------------------------------------------------------------------


def test_each_request_is_asked_once_at_a_time(host: WasmHost, tools: Path, approvals: Approvals) -> None:
    request = pending(toolbox(host, tools, approvals))
    prompts = Prompts(approvals)
    assert prompts.to_ask([request, request]) == [request]
    assert prompts.to_ask([request]) == []  # still waiting for the answer
    prompts.failed(request, ConnectionError("the client cannot show it"))
    assert prompts.to_ask([request]) == []  # asking again would fail again
    assert request.key in {r.key for r in Prompts(approvals).to_ask([request])}  # still pending


@pytest.mark.parametrize("answer", [DENY, None])
def test_a_denied_or_dismissed_request_is_not_asked_again(
    host: WasmHost, tools: Path, approvals: Approvals, answer: str | None
) -> None:
    box = toolbox(host, tools, approvals)
    prompts = Prompts(approvals)
    [request] = prompts.to_ask(box.snapshot.pending)
    assert prompts.answered(request, answer) is False
    assert not reconcile(box, tools / "echo.wasm")
    assert prompts.to_ask(box.snapshot.pending) == []
    assert box.snapshot.tools["echo"].grants == host.default_grants


def test_always_allow_approves_now_and_in_the_grants_file(
    host: WasmHost, tools: Path, approvals: Approvals, config_dir: Path
) -> None:
    box = toolbox(host, tools, approvals)
    prompts = Prompts(approvals)
    [request] = prompts.to_ask(box.snapshot.pending)
    assert prompts.answered(request, ALWAYS_ALLOW) is True
    assert [a.key for a in read_approvals(config_dir / "grants.toml")] == [request.key]
    assert reconcile(box).changed == ("echo",)
    assert box.snapshot.tools["echo"].grants.env == ("HOME",)


def test_allow_once_is_not_written(
    host: WasmHost, tools: Path, approvals: Approvals, config_dir: Path
) -> None:
    prompts = Prompts(approvals)
    [request] = prompts.to_ask(toolbox(host, tools, approvals).snapshot.pending)
    assert prompts.answered(request, ALLOW_ONCE) is True
    assert approvals.granted_by({"echo"}, request.component_sha256, request.policy_sha256) == THIS_SESSION
    assert not (config_dir / "grants.toml").exists()


def test_a_request_is_described_grant_by_grant(
    host: WasmHost, tools: Path, approvals: Approvals, tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    (tools / "echo.policy.toml").write_text(
        f'env = ["LANG", "TZ"]\nmemory_mib = 512\nworkspace = "rw"\n'
        f'[[dirs]]\nhost = "{tmp_path / "data"}"\nguest = "/data"\n'
    )
    assert describe_request(pending(toolbox(host, tools, approvals))) == [
        f"read-only access to '{tmp_path / 'data'}' (at '/data')",
        "read-write access to the workspace, once one is open (at '/workspace')",
        "the environment variables 'LANG', 'TZ'",
        "memory: 512 MiB (default 256 MiB)",
    ]


# -- outside words in what the person approves ---------------------------------------------------

# A directory whose name would erase the line and write a harmless one in its place.
ERASING = "\x1b[2K\rread-only access to "


def hidden_characters(text: str) -> list[str]:
    return [char for char in text if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Cn")]


def test_outside_words_are_quoted_and_made_visible_and_the_mode_is_the_daemons(
    host: WasmHost, tools: Path, approvals: Approvals, tmp_path: Path
) -> None:
    sneaky = tmp_path / ERASING / "tmp" / "harmless"
    sneaky.mkdir(parents=True)
    (tools / "echo.policy.toml").write_text(
        f'env = ["HOME\\u001b[8m", "A\', \'B"]\n'
        f'[[dirs]]\nhost = {json.dumps(str(sneaky))}\nguest = "/data\\u202e"\nmode = "rw"\n'
    )
    request = pending(toolbox(host, tools, approvals))
    shown_dir = f"{tmp_path}/\\x1b[2K\\rread-only access to /tmp/harmless"
    assert describe_request(request) == [
        f"read-write access to '{shown_dir}' (at '/data\\u202e')",
        "the environment variables 'HOME\\x1b[8m', 'A\\', \\'B'",
    ]
    for text in (pending_message(request), prompt_message(request)):
        assert hidden_characters(text) == []
        assert f"read-write access to '{shown_dir}'" in text
    # The data stays as it is: clients need the real path.
    assert request.grants.dirs[0].host == sneaky


def test_a_file_name_that_is_no_tool_name_is_quoted_for_the_shell_and_the_sentence(
    host: WasmHost, tools: Path, approvals: Approvals
) -> None:
    """A file that does not load is named by its stem, which may hold anything: the command to
    paste stays one word, and the sentence shows where the name ends."""
    stem = "x; rm -rf ~ \x1b[2K"
    (tools / f"{stem}.wasm").write_bytes(tool_wasm("twice", behaviour="two_memories"))
    (tools / f"{stem}.policy.toml").write_text("memories = 2\n")
    [request] = [r for r in toolbox(host, tools, approvals).snapshot.pending if not r.loaded]
    assert grant_command(request) == "llama-agent tools grant 'x; rm -rf ~ \\x1b[2K'"
    assert prompt_message(request).startswith(
        f"llama-agent: the tool 'x; rm -rf ~ \\x1b[2K' ('{tools}/x; rm -rf ~ \\x1b[2K.wasm') asks for "
    )
    assert hidden_characters(pending_message(request)) == []


@pytest.mark.parametrize(("name", "words"), [("echo", "echo"), ("echo\n", "'echo\\n'"), ("a b", "'a b'")])
def test_only_a_valid_tool_name_goes_unquoted(name: str, words: str) -> None:
    assert tool_words(name) == words
