"""The bundled workspace tools (read_file, list_dir, search_text, write_file) and datetime, over stdio.

Each test starts the real daemon on a private, trusted tools directory (`--trusted-tools-dir`, so
its policies apply as the bundled ones do) holding copies of the five built components (and the
policies they ship with) and grants it a small workspace with nested directories, a file that is
not UTF-8, a binary file, a file over 1 MB and symlinks leading out.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from llama_agent.common.errors import INVALID_PARAMS

from tests.consent import ALLOW_ONCE, answer_writes
from tests.rpc import DaemonSession, RpcError, StartDaemon

TOOLS = ("read_file", "list_dir", "search_text", "write_file", "datetime")
# A cold compile cache means compiling five Python components (~17 s each) before the first answer.
FIRST_LOAD_TIMEOUT = 600.0
CHANGE_TIMEOUT = 30.0
CAP_BYTES = 200 * 1024
SECRET = "TODO outside secret"

TODO_LINES = "buy milk\nTODO: write tests\nfix the roof\nTODO: ship it\n"
WIDE_LINE = "TODO " + "y" * 300
BIG_LINE = "TODO " + "z" * 95 + "\n"  # 101 bytes
BIG_LINES = 11_000  # 1.1 MB: over search_text's 1 MB limit, and over read_file's 200 KB cap


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the workspace that no tool may see."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text(SECRET + "\n")
    return directory


@pytest.fixture
def workspace(tmp_path: Path, outside: Path) -> Path:
    root = tmp_path / "workspace"
    (root / "notes" / "deep").mkdir(parents=True)
    (root / "src").mkdir()
    (root / "notes" / "todo.txt").write_text(TODO_LINES)
    (root / "notes" / "deep" / "inner.md").write_text("# Title\nnothing to do here\n")
    (root / "src" / "app.py").write_text("def main() -> None:\n    print('hi')  # TODO tidy\n")
    (root / "lines.txt").write_text("".join(f"line {n}\n" for n in range(1, 6)))
    (root / "wide.txt").write_text(WIDE_LINE + "\n")
    (root / "latin1.txt").write_bytes("café TODO\n".encode("latin-1"))
    (root / "blob.bin").write_bytes(b"\x00\x01TODO\x00\xff")
    (root / "big.log").write_text(BIG_LINE * BIG_LINES)
    (root / "escape.txt").symlink_to(outside / "secret.txt")
    (root / "escape-dir").symlink_to(outside)
    return root.resolve()


@pytest.fixture
def tools(tmp_path: Path, bundled_tools: Path) -> Path:
    """Copies of the five tools, with the policy files they ship with (write_file ships none)."""
    directory = tmp_path / "tools"
    directory.mkdir()
    for name in TOOLS:
        shutil.copy2(bundled_tools / f"{name}.wasm", directory / f"{name}.wasm")
        policy = bundled_tools / f"{name}.policy.toml"
        if policy.exists():
            shutil.copy2(policy, directory / policy.name)
    assert not (directory / "write_file.policy.toml").exists()
    return directory


async def listed(daemon: DaemonSession) -> dict[str, dict[str, Any]]:
    listing = await daemon.request("tools/list", timeout=FIRST_LOAD_TIMEOUT)
    assert listing["failed"] == [], listing["failed"]
    return {tool["name"]: tool for tool in listing["tools"]}


async def serve(start_daemon: StartDaemon, tools: Path, workspace: Path, *args: str | Path) -> DaemonSession:
    """A daemon whose client names `workspace`. The folder a client names at `initialize` is
    part of the first load: the first tools/list already shows it granted."""
    # With `--workspace DIR` the client names no folder: the daemon's flag is enough.
    client_folder = {} if "--workspace" in args else {"rootUri": workspace.as_uri()}
    daemon = await start_daemon("--trusted-tools-dir", tools, *args, init_params=client_folder)
    assert (await listed(daemon))["read_file"]["grants"]["dirs"], "the first tools/list lacks the workspace"
    return daemon


async def call(daemon: DaemonSession, tool: str, **arguments: Any) -> tuple[bool, str]:
    result = await daemon.request("tools/invoke", {"name": tool, "arguments": arguments})
    assert result["truncated"] is False
    assert result["timedOut"] is False
    assert len(result["content"]) == 1, result
    return result["isError"], result["content"][0]["text"]


async def ok(daemon: DaemonSession, tool: str, **arguments: Any) -> str:
    is_error, text = await call(daemon, tool, **arguments)
    assert is_error is False, (tool, arguments, text)
    return text


async def failed(daemon: DaemonSession, tool: str, **arguments: Any) -> str:
    is_error, text = await call(daemon, tool, **arguments)
    assert is_error is True, (tool, arguments, text)
    return text


# -- tools/list ---------------------------------------------------------------------------------


@pytest.mark.parametrize("named", ["rootUri", "workspaceFolders"])
async def test_a_workspace_named_at_initialize_is_part_of_the_first_load_and_not_announced(
    start_daemon: StartDaemon, tools: Path, workspace: Path, named: str
) -> None:
    folder = (
        {"rootUri": workspace.as_uri()}
        if named == "rootUri"
        else {"workspaceFolders": [{"uri": workspace.as_uri(), "name": "ws"}]}
    )
    daemon = await start_daemon("--trusted-tools-dir", tools, init_params=folder)
    listing = await listed(daemon)
    assert listing["read_file"]["grants"]["dirs"][0]["host"] == str(workspace)
    await asyncio.sleep(1.0)  # a late announcement would have arrived by now
    assert [m for m in daemon.notifications if m["method"] == "tools/didChange"] == []


async def test_workspace_tools_are_granted_the_workspace_read_only(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    daemon = await serve(start_daemon, tools, workspace)
    listing = await listed(daemon)
    assert sorted(listing) == sorted(TOOLS)
    read_only = [{"host": str(workspace), "guest": "/workspace", "mode": "ro"}]
    for name in ("read_file", "list_dir", "search_text"):
        assert listing[name]["grants"]["dirs"] == read_only, name
        assert listing[name]["grants"]["network"] is False
        assert listing[name]["policyError"] is None
    assert listing["write_file"]["grants"]["dirs"] == []
    assert listing["datetime"]["grants"]["dirs"] == []
    assert listing["read_file"]["inputSchema"]["required"] == ["path"]
    start_line = listing["read_file"]["inputSchema"]["properties"]["start_line"]
    assert (start_line["type"], start_line["minimum"], start_line["default"]) == ("integer", 1, 1)
    max_results = listing["search_text"]["inputSchema"]["properties"]["max_results"]
    assert (max_results["minimum"], max_results["maximum"], max_results["default"]) == (1, 100, 20)
    assert listing["search_text"]["inputSchema"]["required"] == ["pattern"]
    assert listing["write_file"]["inputSchema"]["properties"]["append"]["type"] == "boolean"
    assert listing["datetime"]["inputSchema"]["required"] == []


# -- read_file ----------------------------------------------------------------------------------


async def test_read_file_reads_whole_files_and_line_ranges(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    daemon = await serve(start_daemon, tools, workspace)
    assert await ok(daemon, "read_file", path="notes/todo.txt") == TODO_LINES
    assert await ok(daemon, "read_file", path="/workspace/notes/todo.txt") == TODO_LINES
    assert await ok(daemon, "read_file", path="./notes/deep/../todo.txt") == TODO_LINES
    assert await ok(daemon, "read_file", path="lines.txt", start_line=2, end_line=3) == "line 2\nline 3\n"
    assert await ok(daemon, "read_file", path="lines.txt", start_line=4) == "line 4\nline 5\n"
    assert await ok(daemon, "read_file", path="lines.txt", end_line=1) == "line 1\n"
    assert await ok(daemon, "read_file", path="lines.txt", start_line=5, end_line=5) == "line 5\n"
    # An end past the last line reads to the end.
    assert await ok(daemon, "read_file", path="lines.txt", start_line=5, end_line=99) == "line 5\n"


READ_FILE_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"path": "missing.txt"}, "'missing.txt' does not exist in the workspace"),
    ({"path": "notes"}, "'notes' is a directory, not a file"),
    ({"path": "lines.txt/x"}, "'lines.txt/x' does not exist: a part of it is a file, not a directory"),
    (
        {"path": "lines.txt", "start_line": 6},
        "start_line 6 is past the end of 'lines.txt', which has 5 lines",
    ),
    ({"path": "lines.txt", "start_line": 3, "end_line": 2}, "end_line 2 is before start_line 3"),
    ({"path": "latin1.txt"}, "'latin1.txt' is not UTF-8 text: invalid byte 0xe9 on line 1"),
    ({"path": "blob.bin"}, "'blob.bin' looks like a binary file (NUL byte on line 1), not text"),
]


async def test_read_file_errors_name_the_problem(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    daemon = await serve(start_daemon, tools, workspace)
    for arguments, expected in READ_FILE_ERRORS:
        text = await failed(daemon, "read_file", **arguments)
        assert expected in text, (arguments, text)


async def test_read_file_caps_its_output_at_200_kb(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    daemon = await serve(start_daemon, tools, workspace)
    text = await ok(daemon, "read_file", path="big.log")
    shown, marker, note = text.rpartition("[cut at 200 KB: ")
    lines = CAP_BYTES // len(BIG_LINE)
    assert marker
    assert shown == BIG_LINE * lines
    assert note == f"lines 1-{lines} shown; read on with start_line={lines + 1}]"
    # The rest is reachable by line range, also past the first megabyte.
    tail = await ok(daemon, "read_file", path="big.log", start_line=BIG_LINES - 1)
    assert tail == BIG_LINE * 2
    # A single line over the cap is cut too, at a character boundary (é is two bytes).
    (workspace / "one-line.txt").write_text("x" + "é" * 150_000, encoding="utf-8")
    cut = await ok(daemon, "read_file", path="one-line.txt")
    assert cut == "x" + "é" * ((CAP_BYTES - 1) // 2) + "\n[cut at 200 KB: line 1 alone is longer than that]"


# -- list_dir -----------------------------------------------------------------------------------


async def test_list_dir_lists_sorted_entries_with_sizes(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    daemon = await serve(start_daemon, tools, workspace)
    assert await ok(daemon, "list_dir") == "\n".join(
        [
            f"big.log ({len(BIG_LINE) * BIG_LINES} bytes)",
            "blob.bin (8 bytes)",
            "escape-dir (symlink leading outside the workspace)",
            "escape.txt (symlink leading outside the workspace)",
            "latin1.txt (10 bytes)",
            "lines.txt (35 bytes)",
            "notes/",
            "src/",
            f"wide.txt ({len(WIDE_LINE) + 1} bytes)",
        ]
    )
    expected_notes = "deep/\ntodo.txt (" + str(len(TODO_LINES)) + " bytes)"
    assert await ok(daemon, "list_dir", path="notes") == expected_notes
    assert await ok(daemon, "list_dir", path="/workspace/notes/") == expected_notes
    (workspace / "empty").mkdir()
    assert await ok(daemon, "list_dir", path="empty") == "(empty directory)"
    assert "'lines.txt' is a file, not a directory" in await failed(daemon, "list_dir", path="lines.txt")
    assert "'nope' does not exist" in await failed(daemon, "list_dir", path="nope")


async def test_list_dir_stops_at_1000_entries(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    crowd = workspace / "crowd"
    crowd.mkdir()
    for n in range(1005):
        (crowd / f"f{n:04}").write_bytes(b"")
    daemon = await serve(start_daemon, tools, workspace)
    lines = (await ok(daemon, "list_dir", path="crowd")).split("\n")
    assert len(lines) == 1001
    assert lines[0] == "f0000 (0 bytes)"
    assert lines[999] == "f0999 (0 bytes)"
    assert lines[1000] == "(showing the first 1000 of 1005 entries)"


# -- search_text --------------------------------------------------------------------------------


async def test_search_text_reports_each_hit_with_file_and_line(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    daemon = await serve(start_daemon, tools, workspace)
    # Skipped: big.log (over 1 MB), blob.bin (binary), latin1.txt (not UTF-8), the symlinks.
    assert await ok(daemon, "search_text", pattern="TODO") == "\n".join(
        [
            "wide.txt:1: " + WIDE_LINE[:199] + "…",
            "notes/todo.txt:2: TODO: write tests",
            "notes/todo.txt:4: TODO: ship it",
            "src/app.py:2:     print('hi')  # TODO tidy",
        ]
    )
    assert await ok(daemon, "search_text", pattern=r"^TODO: (write|ship)\b", path="notes") == (
        "notes/todo.txt:2: TODO: write tests\nnotes/todo.txt:4: TODO: ship it"
    )
    assert await ok(daemon, "search_text", pattern=r"def \w+\(", path="src/app.py") == (
        "src/app.py:1: def main() -> None:"
    )
    nothing = await ok(daemon, "search_text", pattern="café")
    assert nothing.startswith("no matches for 'café' in '.'")


async def test_search_text_stops_at_max_results(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    (workspace / "many.txt").write_text("".join(f"match {n}\n" for n in range(1, 601)))
    daemon = await serve(start_daemon, tools, workspace)
    five = (await ok(daemon, "search_text", pattern="match", max_results=5)).split("\n")
    assert five == [f"many.txt:{n}: match {n}" for n in range(1, 6)] + ["(stopped after 5 matches)"]
    default = (await ok(daemon, "search_text", pattern=r"match \d+")).split("\n")
    assert len(default) == 21
    assert default[-2:] == ["many.txt:20: match 20", "(stopped after 20 matches)"]
    most = (await ok(daemon, "search_text", pattern="match", max_results=100)).split("\n")
    assert most[-1] == "(stopped after 100 matches)"
    exact = await ok(daemon, "search_text", pattern="^match 60[0-9]$", max_results=1)
    assert exact == "many.txt:600: match 600"  # exactly max_results hits: no note


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("search_text", {"pattern": "match", "max_results": 101}, "max_results"),
        ("search_text", {"pattern": "match", "max_results": 0}, "max_results"),
        ("read_file", {"path": "lines.txt", "start_line": 0}, "start_line"),
        ("read_file", {"path": "lines.txt", "end_line": -3}, "end_line"),
    ],
)
async def test_arguments_out_of_bounds_never_reach_the_tool(
    start_daemon: StartDaemon, tools: Path, workspace: Path, tool: str, arguments: dict[str, Any], field: str
) -> None:
    daemon = await serve(start_daemon, tools, workspace)
    with pytest.raises(RpcError) as raised:
        await daemon.request("tools/invoke", {"name": tool, "arguments": arguments})
    assert raised.value.code == INVALID_PARAMS
    assert raised.value.data["field"] == field


async def test_search_text_names_the_problem_with_an_invalid_regex(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    daemon = await serve(start_daemon, tools, workspace)
    unclosed = await failed(daemon, "search_text", pattern="foo(")
    assert unclosed == "invalid regular expression 'foo(': missing ), unterminated subpattern at position 3"
    assert "unterminated character set" in await failed(daemon, "search_text", pattern="[a-")
    assert "nothing to repeat" in await failed(daemon, "search_text", pattern="*TODO")


# -- escapes ------------------------------------------------------------------------------------


ESCAPES: list[tuple[str, dict[str, Any]]] = [
    ("read_file", {"path": "../outside/secret.txt"}),
    ("read_file", {"path": "notes/../../outside/secret.txt"}),
    ("read_file", {"path": "/etc/passwd"}),
    ("read_file", {"path": "escape.txt"}),
    ("read_file", {"path": "escape-dir/secret.txt"}),
    ("list_dir", {"path": ".."}),
    ("list_dir", {"path": "/"}),
    ("list_dir", {"path": "escape-dir"}),
    ("search_text", {"pattern": "TODO", "path": ".."}),
    ("search_text", {"pattern": "TODO", "path": "escape-dir"}),
    ("search_text", {"pattern": "TODO", "path": "escape.txt"}),
]


async def test_paths_leading_out_of_the_workspace_are_denied(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    daemon = await serve(start_daemon, tools, workspace)
    for tool, arguments in ESCAPES:
        text = await failed(daemon, tool, **arguments)
        assert "outside the workspace" in text, (tool, arguments, text)
        assert SECRET not in text
    # A search of the whole workspace skips the symlinks that lead out.
    assert (await ok(daemon, "search_text", pattern="secret")).startswith("no matches for 'secret'")
    assert SECRET not in await ok(daemon, "search_text", pattern=".", max_results=100)


# -- write_file ---------------------------------------------------------------------------------


async def test_write_file_has_no_workspace_by_default(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    daemon = await serve(start_daemon, tools, workspace)
    text = await failed(daemon, "write_file", path="new.txt", content="hello")
    assert text.startswith("no writable workspace is granted to write_file")
    assert 'add `workspace = "rw"` to write_file.policy.toml' in text
    assert not (workspace / "new.txt").exists()


async def test_write_file_fails_on_a_read_only_workspace(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    (tools / "write_file.policy.toml").write_text('workspace = "ro"\n')
    daemon = await serve(start_daemon, tools, workspace, "--workspace", workspace)
    grants = (await listed(daemon))["write_file"]["grants"]
    assert grants["dirs"] == [{"host": str(workspace), "guest": "/workspace", "mode": "ro"}]
    for path in ("new.txt", "lines.txt", "notes/new/deeper.txt"):
        text = await failed(daemon, "write_file", path=path, content="hello")
        assert "permission denied, the workspace is read-only" in text, path
    assert not (workspace / "new.txt").exists()
    assert not (workspace / "notes" / "new").exists()
    assert (workspace / "lines.txt").read_text().startswith("line 1\n")


async def test_write_file_writes_once_granted_read_write(
    start_daemon: StartDaemon, tools: Path, workspace: Path, outside: Path
) -> None:
    daemon = await serve(start_daemon, tools, workspace)
    answer_writes(daemon, ALLOW_ONCE)  # the person allows each write
    assert "no writable workspace" in await failed(daemon, "write_file", path="new.txt", content="x")
    seen = len(daemon.notifications)
    (tools / "write_file.policy.toml").write_text('workspace = "rw"\n')
    change = await daemon.wait_for_notification(
        "tools/didChange", CHANGE_TIMEOUT, after=seen, where=lambda params: "write_file" in params["changed"]
    )
    assert change["params"]["failed"] == []
    grants = (await listed(daemon))["write_file"]["grants"]
    assert grants["dirs"] == [{"host": str(workspace), "guest": "/workspace", "mode": "rw"}]

    assert await ok(daemon, "write_file", path="new.txt", content="héllo\n") == "wrote 7 bytes to new.txt"
    assert (workspace / "new.txt").read_text(encoding="utf-8") == "héllo\n"
    appended = await ok(daemon, "write_file", path="new.txt", content="again\n", append=True)
    assert appended == "wrote 6 bytes to new.txt (appended)"
    assert (workspace / "new.txt").read_text(encoding="utf-8") == "héllo\nagain\n"
    replaced = await ok(daemon, "write_file", path="/workspace/new.txt", content="fresh", append=False)
    assert replaced == "wrote 5 bytes to new.txt"
    assert (workspace / "new.txt").read_text() == "fresh"
    nested = await ok(daemon, "write_file", path="made/up/dirs/file.md", content="# hi\n")
    assert nested == "wrote 5 bytes to made/up/dirs/file.md"
    assert (workspace / "made" / "up" / "dirs" / "file.md").read_text() == "# hi\n"
    # What was written is what the other tools read.
    assert await ok(daemon, "read_file", path="made/up/dirs/file.md") == "# hi\n"

    assert "it is a directory" in await failed(daemon, "write_file", path="notes", content="x")
    for escape in ("../sneaky.txt", "/tmp/sneaky.txt", "escape.txt", "escape-dir/sneaky.txt"):
        text = await failed(daemon, "write_file", path=escape, content="pwned")
        assert "outside the workspace" in text, escape
    assert (outside / "secret.txt").read_text() == SECRET + "\n"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert not (workspace.parent / "sneaky.txt").exists()
    assert (workspace / "escape.txt").is_symlink()  # refused, not replaced by a file

    # A link that stays inside the workspace is written through, and stays a link.
    (workspace / "alias.txt").symlink_to("lines.txt")
    assert await ok(daemon, "write_file", path="alias.txt", content="via the link\n") == (
        "wrote 13 bytes to lines.txt"
    )
    assert (workspace / "alias.txt").is_symlink()
    assert (workspace / "lines.txt").read_text() == "via the link\n"
    assert not list(workspace.glob(".*.partial"))


# -- datetime -----------------------------------------------------------------------------------


def parse_now(text: str, zone: str) -> datetime:
    stamp, _, name = text.partition(" ")
    assert name == f"({zone})", text
    parsed = datetime.fromisoformat(stamp)
    assert parsed.tzinfo is not None, text
    assert abs(parsed - datetime.now(UTC)) < timedelta(minutes=1), text
    return parsed


async def test_datetime_tells_the_time_in_a_time_zone(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    daemon = await serve(start_daemon, tools, workspace)
    utc = parse_now(await ok(daemon, "datetime"), "UTC")
    assert utc.utcoffset() == timedelta(0)
    assert parse_now(await ok(daemon, "datetime", timezone="UTC"), "UTC").utcoffset() == timedelta(0)
    tokyo_text = await ok(daemon, "datetime", timezone="Asia/Tokyo")
    assert tokyo_text.endswith("+09:00 (Asia/Tokyo)")
    assert parse_now(tokyo_text, "Asia/Tokyo").utcoffset() == timedelta(hours=9)
    kolkata = parse_now(await ok(daemon, "datetime", timezone="Asia/Kolkata"), "Asia/Kolkata")
    assert kolkata.utcoffset() == timedelta(hours=5, minutes=30)
    paris = parse_now(await ok(daemon, "datetime", timezone="europe/paris"), "Europe/Paris")
    assert paris.utcoffset() in (timedelta(hours=1), timedelta(hours=2))


async def test_datetime_takes_a_city_or_a_country_and_names_its_zone(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    daemon = await serve(start_daemon, tools, workspace)
    lima = parse_now(await ok(daemon, "datetime", timezone="Lima"), "America/Lima")
    assert lima.utcoffset() == timedelta(hours=-5)
    sao_paulo = parse_now(await ok(daemon, "datetime", timezone="são paulo"), "America/Sao_Paulo")
    assert sao_paulo.utcoffset() == timedelta(hours=-3)
    japan = parse_now(await ok(daemon, "datetime", timezone="Japan"), "Asia/Tokyo")
    assert japan.utcoffset() == timedelta(hours=9)
    peru = parse_now(await ok(daemon, "datetime", timezone="Peru"), "America/Lima")
    assert peru.utcoffset() == timedelta(hours=-5)
    uk = parse_now(await ok(daemon, "datetime", timezone="United Kingdom"), "Europe/London")
    assert uk.utcoffset() in (timedelta(0), timedelta(hours=1))
    korea = await failed(daemon, "datetime", timezone="Korea")
    assert korea.endswith("'Korea': it could mean Korea (North) or Korea (South): name one of them")


async def test_datetime_rejects_unknown_time_zones(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    daemon = await serve(start_daemon, tools, workspace)
    text = await failed(daemon, "datetime", timezone="Mars/Olympus_Mons")
    assert text.startswith("unknown time zone 'Mars/Olympus_Mons': use an IANA time zone name, a city or a")
    misspelt = await failed(daemon, "datetime", timezone="Asia/Tokio")
    assert "did you mean" in misspelt
    assert "Asia/Tokyo" in misspelt
    assert "unknown time zone ''" in await failed(daemon, "datetime", timezone="")
