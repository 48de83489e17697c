"""What the person is asked about a call that may write: the paths it names, where they lead
through its grants, the text it would write, and what "always allow" binds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from llama_agent.runtime.tools.limits import Limits
from llama_agent.runtime.tools.policy import WORKSPACE_GUEST, DirGrant, Grants
from llama_agent.runtime.wasm.host import WasmHost
from llama_agent.services.consent.calls import (
    DECLINED,
    MAX_SHOWN_CHARS,
    CallConsent,
    Choice,
    allow_key,
    declined,
    describe_call,
    not_asked,
)
from llama_agent.services.tools.registry import Tool, Toolbox

from tests.wat_tools import tool_wasm

WRITER_PARAMS = (("path", "string", True), ("content", "string", True), ("append", "boolean", False))


@pytest.fixture(scope="module")
def writer(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Tool]:
    tools = tmp_path_factory.mktemp("consent-tools")
    (tools / "writer.wasm").write_bytes(tool_wasm("writer", params=WRITER_PARAMS))
    box = Toolbox(WasmHost(cache_dir, Limits()), [tools])
    box.load_all()
    yield box.snapshot.tools["writer"]
    box.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


def granted(workspace: Path, *more: DirGrant) -> Grants:
    return Grants(dirs=(DirGrant(workspace, WORKSPACE_GUEST, "rw"), *more))


def test_a_relative_path_leads_into_the_workspace_and_a_whole_file_is_a_diff(
    writer: Tool, workspace: Path
) -> None:
    (workspace / "notes.txt").write_text("old line\n")
    asked = describe_call(writer, granted(workspace), {"path": "notes.txt", "content": "new line\n"}, step=2)
    [path] = asked.paths
    assert (path.argument, path.value, path.host) == ("path", "notes.txt", workspace / "notes.txt")
    [text] = asked.texts
    assert (text.argument, text.text) == ("content", "new line\n")
    assert asked.whole_file is not None
    assert (asked.whole_file.path, asked.whole_file.new_text) == (workspace / "notes.txt", "new line\n")
    assert asked.whole_file.old_text == "old line\n"
    assert asked.step == 2
    assert asked.title() == f"writer may write to '{workspace}'"
    assert f"It names '{workspace / 'notes.txt'}' (path)." in asked.detail()


def test_a_new_file_has_no_old_text_and_an_append_is_no_whole_file(writer: Tool, workspace: Path) -> None:
    new = describe_call(writer, granted(workspace), {"path": "sub/new.md", "content": "x"})
    assert new.whole_file is not None and new.whole_file.old_text is None
    appending = describe_call(writer, granted(workspace), {"path": "a.txt", "content": "x", "append": True})
    assert appending.whole_file is None
    assert "Other arguments: append=true." in appending.detail()
    replacing = describe_call(writer, granted(workspace), {"path": "a.txt", "content": "x", "append": False})
    assert replacing.whole_file is not None


def test_paths_follow_the_grant_they_name_and_never_climb_out_of_one(
    writer: Tool, workspace: Path, tmp_path: Path
) -> None:
    data = DirGrant(tmp_path / "data", "/data", "rw")
    grants = granted(workspace, data)
    cases = {
        "/data/sub/x.txt": tmp_path / "data" / "sub" / "x.txt",
        "/workspace/a/../b.txt": workspace / "b.txt",
        "/workspace": workspace,
        "../outside.txt": None,  # wasmtime refuses it: it names nothing a grant gives
        "/etc/passwd": None,
        "/datas/x": None,  # a prefix of a guest path is not inside it
    }
    for value, host in cases.items():
        [path] = describe_call(writer, grants, {"path": value, "content": "x"}).paths
        assert path.host == host, value
    # No workspace granted: a relative path leads nowhere the tool could write.
    [path] = describe_call(writer, Grants(dirs=(data,)), {"path": "x.txt", "content": "x"}).paths
    assert path.host is None


def test_an_absolute_guest_path_is_a_path_whatever_its_parameter_is_called(
    workspace: Path, writer: Tool
) -> None:
    arguments = {"path": "a.txt", "content": "/workspace/other.txt"}
    asked = describe_call(writer, granted(workspace), arguments)
    assert [path.host for path in asked.paths] == [workspace / "a.txt", workspace / "other.txt"]
    assert asked.texts == () and asked.whole_file is None


def test_a_file_the_tool_could_not_reach_is_not_read_for_the_diff(
    writer: Tool, workspace: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (workspace / "link.txt").symlink_to(secret)
    (workspace / "binary.bin").write_bytes(b"\xff\xfe\x00")
    (workspace / "big.txt").write_text("x" * (2 * 1024 * 1024))
    for name in ("link.txt", "binary.bin", "big.txt"):
        asked = describe_call(writer, granted(workspace), {"path": name, "content": "new"})
        assert asked.whole_file is None, name
        assert [text.text for text in asked.texts] == ["new"]
    os.mkfifo(workspace / "fifo.txt")  # read without waiting for a writer, or not at all
    assert describe_call(writer, granted(workspace), {"path": "fifo.txt", "content": "x"}).whole_file is None


def test_outside_words_are_shown_with_their_escapes_visible_and_long_texts_cut(
    writer: Tool, tmp_path: Path
) -> None:
    folder = tmp_path / "proj\x1b[2K\u202e"
    folder.mkdir()
    long = "\x1b[31m" + "y" * (MAX_SHOWN_CHARS + 10)
    asked = describe_call(writer, granted(folder), {"path": "a\rb.txt", "content": long})
    for words in (asked.title(), asked.detail(), asked.message(), asked.summary()):
        assert "\x1b" not in words and "\u202e" not in words and "\r" not in words
        assert "proj\\x1b[2K\\u202e" in words
    assert "a\\rb.txt" in asked.message()
    assert asked.whole_file is None  # longer than is shown: not a diff of a cut text
    [text] = asked.texts
    # The first MAX_SHOWN_CHARS characters (\x1b shown in 4), then "…".
    assert text.shown().endswith("y…") and len(text.shown()) == MAX_SHOWN_CHARS + 3 + 1
    assert f"({MAX_SHOWN_CHARS + 15:,} characters)" in text.preview().replace("content, ", "")


def test_refusals_say_what_was_not_written_and_how_to_approve(writer: Tool, workspace: Path) -> None:
    asked = describe_call(writer, granted(workspace), {"path": "a.txt", "content": "hi"})
    assert declined(in_run=False) == DECLINED
    assert declined(in_run=True).startswith(DECLINED) and "Answer without it" in declined(in_run=True)
    refused = not_asked(asked, "nobody is there: pass --allow-writes", in_run=False)
    assert refused == (
        f"not run: writer would write the text 'hi' (content, 2 characters) to '{workspace / 'a.txt'}' "
        "(path). Writing needs the person's approval, and nobody is there: pass --allow-writes"
    )


def test_only_a_call_that_may_write_needs_asking_and_always_binds_what_was_seen(
    writer: Tool, workspace: Path, tmp_path: Path
) -> None:
    consent = CallConsent()
    reads = Grants(dirs=(DirGrant(workspace, WORKSPACE_GUEST, "ro"),))
    assert not consent.needed(writer, reads)
    writes = granted(workspace)
    assert consent.needed(writer, writes)
    assert consent.answered(writer, writes, Choice.ALLOW_ONCE)
    assert consent.needed(writer, writes)  # once is once
    assert not consent.answered(writer, writes, Choice.REJECT)
    assert consent.answered(writer, writes, Choice.ALLOW_ALWAYS)
    assert not consent.needed(writer, writes)
    # Another folder to write, another component, another request: asked again.
    assert consent.needed(writer, granted(tmp_path / "elsewhere"))
    other_component = replace(writer, loaded=replace(writer.loaded, content_hash="0" * 64))
    assert consent.needed(other_component, writes)
    assert consent.needed(replace(writer, request_sha256="f" * 64), writes)
    assert allow_key(writer, writes)[1] == (f"{workspace} at /workspace",)
    assert not CallConsent(allow_writes=True).needed(writer, writes)
