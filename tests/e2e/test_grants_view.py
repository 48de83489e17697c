"""The Grants view's methods over stdio: grants/list shows what each pending request asks for
exactly, grants/answer approves once or always (or denies), grants/revoke drops an approval as
`llama-agent tools revoke` does, and grants/didChange tells the client to list them again. A
client that says it has the view (initializationOptions.grantsView) is not asked about grants
with window/showMessageRequest."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from llama_agent.common.errors import INVALID_PARAMS

from tests.consent import ALLOW_ONCE, answer_writes, is_call_question
from tests.rpc import DaemonSession, RpcError, StartDaemon

QUESTION = "window/showMessageRequest"
CHANGE_TIMEOUT = 30.0
VIEW = {"initializationOptions": {"grantsView": True}}


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


@pytest.fixture
def dropbox(tmp_path: Path, test_tools: Path, data_dir: Path, out_dir: Path) -> Path:
    """An untrusted tools directory: the hostile tool, asking to read `data_dir`, to write
    `out_dir`, for a variable and for more time than the defaults give."""
    directory = tmp_path / "dropbox"
    directory.mkdir()
    shutil.copy2(test_tools / "hostile.wasm", directory / "hostile.wasm")
    (directory / "hostile.policy.toml").write_text(
        'env = ["LANG"]\ntimeout_seconds = 60\nmemory_mib = 64\n'
        f'[[dirs]]\nhost = "{data_dir}"\nguest = "/data"\n'
        f'[[dirs]]\nhost = "{out_dir}"\nguest = "/out"\nmode = "rw"\n'
    )
    return directory


async def serve(start_daemon: StartDaemon, tools: Path, **init: Any) -> DaemonSession:
    """A daemon over `tools` whose client allows each call that may write, and records each
    question about grants (leaving it unanswered)."""
    daemon = await start_daemon("--tools-dir", tools, initialize=False)
    unanswered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    answer_writes(daemon, ALLOW_ONCE, grants=lambda params: unanswered)
    await daemon.initialize(**init)
    await daemon.request("tools/list")  # the first load
    return daemon


def grant_questions(daemon: DaemonSession) -> list[dict[str, Any]]:
    return [asked for asked in daemon.server_requests(QUESTION) if not is_call_question(asked["params"])]


async def read_data(daemon: DaemonSession) -> str:
    result = await daemon.request(
        "tools/invoke", {"name": "hostile", "arguments": {"action": "read", "target": "/data/inside.txt"}}
    )
    return str(result["content"][0]["text"])


async def the_request(daemon: DaemonSession) -> dict[str, Any]:
    listing = await daemon.request("grants/list")
    [request] = [request for request in listing["pending"] if request["tool"] == "hostile"]
    return dict(request)


async def hostile_approval(daemon: DaemonSession) -> dict[str, Any] | None:
    listing = await daemon.request("grants/list")
    found = [approval for approval in listing["approved"] if approval["tool"] == "hostile"]
    return found[0] if found else None


async def after(daemon: DaemonSession, method: str, seen: int, tool: str | None = None) -> None:
    def matches(params: Any) -> bool:
        return tool is None or tool in params["changed"]

    await daemon.wait_for_notification(method, CHANGE_TIMEOUT, after=seen, where=matches)


async def test_the_list_shows_exactly_what_a_pending_request_asks_and_the_view_is_not_asked(
    start_daemon: StartDaemon, dropbox: Path, data_dir: Path, out_dir: Path
) -> None:
    daemon = await serve(start_daemon, dropbox, **VIEW)
    capabilities = daemon.initialize_result["capabilities"]["experimental"]["llamaAgent"]
    assert {"grants/list", "grants/answer", "grants/revoke"} <= set(capabilities["methods"])
    assert "grants/didChange" in capabilities["notifications"]

    request = await the_request(daemon)
    assert request["dirs"] == [
        {"path": str(data_dir), "mode": "ro", "guest": "/data"},
        {"path": str(out_dir), "mode": "rw", "guest": "/out"},
    ]
    assert request["env"] == ["LANG"]
    # Only what is above the defaults: less memory than the default asks nothing.
    assert request["limits"] == {"timeoutSeconds": 60}
    assert (request["workspace"], request["denied"]) == (None, False)
    assert request["id"].startswith("hostile:")
    assert request["message"].startswith(
        f"llama-agent: the tool hostile ('{dropbox / 'hostile.wasm'}') asks for"
    )
    assert f"read-write access to '{out_dir}' (at '/out')" in request["message"]
    assert (await the_request(daemon))["id"] == request["id"]  # stable
    assert (await daemon.request("grants/list"))["approved"] == []

    await asyncio.sleep(1.0)  # past the moment a client without the view is asked
    assert grant_questions(daemon) == []
    assert (await read_data(daemon)).startswith("denied:")

    plain = await serve(start_daemon, dropbox)  # the control: without the view, it is asked
    await plain.wait_until(lambda: len(grant_questions(plain)) == 1, CHANGE_TIMEOUT)
    assert grant_questions(plain)[0]["params"]["message"] == request["message"]

    # A policy edited outside: the view is told to list again, and lists the new request.
    seen, plain_seen = len(daemon.notifications), len(plain.notifications)
    (dropbox / "hostile.policy.toml").write_text(f'[[dirs]]\nhost = "{data_dir}"\nguest = "/d"\n')
    await after(daemon, "grants/didChange", seen)
    edited = await the_request(daemon)
    assert edited["id"] != request["id"]
    assert edited["dirs"] == [{"path": str(data_dir), "mode": "ro", "guest": "/d"}]
    await after(plain, "tools/didChange", plain_seen, "hostile")
    assert [n for n in plain.notifications if n["method"] == "grants/didChange"] == []


async def test_allow_once_approves_for_this_session_and_revoke_takes_it_back(
    start_daemon: StartDaemon, dropbox: Path, data_dir: Path, config_dir: Path
) -> None:
    daemon = await serve(start_daemon, dropbox, **VIEW)
    request = await the_request(daemon)
    seen = len(daemon.notifications)
    answer = await daemon.request("grants/answer", {"id": request["id"], "action": "Allow once"})
    assert answer == {"changed": True}
    await after(daemon, "tools/didChange", seen, "hostile")
    await after(daemon, "grants/didChange", seen)
    listing = await daemon.request("grants/list")
    assert [r["tool"] for r in listing["pending"]] == []
    assert await hostile_approval(daemon) == {
        "tool": "hostile",
        "scope": "this session",
        "dirs": request["dirs"],
        "env": ["LANG"],
        "limits": {"timeoutSeconds": 60},
        "workspace": None,
    }
    assert await read_data(daemon) == "read: granted content"
    assert not (config_dir / "grants.toml").exists()
    with pytest.raises(RpcError) as gone:  # answered: no longer pending
        await daemon.request("grants/answer", {"id": request["id"], "action": "Allow once"})
    assert gone.value.code == INVALID_PARAMS

    seen = len(daemon.notifications)
    assert await daemon.request("grants/revoke", {"tool": "hostile"}) == {"revoked": True}
    await after(daemon, "tools/didChange", seen, "hostile")
    await after(daemon, "grants/didChange", seen)
    assert await hostile_approval(daemon) is None
    assert (await the_request(daemon))["id"] == request["id"]
    assert (await read_data(daemon)).startswith("denied:")
    assert await daemon.request("grants/revoke", {"tool": "hostile"}) == {"revoked": False}


async def test_always_allow_writes_the_grants_file_and_revoke_removes_it(
    start_daemon: StartDaemon, dropbox: Path, config_dir: Path
) -> None:
    daemon = await serve(start_daemon, dropbox, **VIEW)
    request = await the_request(daemon)
    seen = len(daemon.notifications)
    answer = await daemon.request("grants/answer", {"id": request["id"], "action": "Always allow"})
    assert answer == {"changed": True}
    await after(daemon, "grants/didChange", seen)
    assert 'name = "hostile"' in (config_dir / "grants.toml").read_text()
    assert await read_data(daemon) == "read: granted content"

    restarted = await serve(start_daemon, dropbox, **VIEW)  # the file holds for the next daemon
    approval = await hostile_approval(restarted)
    assert approval is not None
    assert (approval["scope"], approval["dirs"]) == ("grants file", request["dirs"])

    seen = len(restarted.notifications)
    assert await restarted.request("grants/revoke", {"tool": "hostile"}) == {"revoked": True}
    await after(restarted, "tools/didChange", seen, "hostile")
    await after(restarted, "grants/didChange", seen)
    assert "hostile" not in (config_dir / "grants.toml").read_text()
    assert await hostile_approval(restarted) is None
    assert (await read_data(restarted)).startswith("denied:")


async def test_deny_keeps_the_request_pending_and_marked(start_daemon: StartDaemon, dropbox: Path) -> None:
    daemon = await serve(start_daemon, dropbox, **VIEW)
    request = await the_request(daemon)
    answer = await daemon.request("grants/answer", {"id": request["id"], "action": "Deny"})
    assert answer == {"changed": False}
    denied = await the_request(daemon)
    assert (denied["id"], denied["denied"]) == (request["id"], True)
    assert (await read_data(daemon)).startswith("denied:")
    # Still approvable from the view.
    assert await daemon.request("grants/answer", {"id": request["id"], "action": "Allow once"}) == {
        "changed": True
    }
    assert await read_data(daemon) == "read: granted content"


async def test_a_trusted_tool_is_listed_as_approved_and_cannot_be_revoked(
    start_daemon: StartDaemon, make_tools_dir: Any
) -> None:
    writer = make_tools_dir("write_file", policies={"write_file": 'workspace = "rw"'}, name="writer")
    workspace = writer.parent / "workspace"
    workspace.mkdir()
    daemon = await start_daemon("--trusted-tools-dir", writer, initialize=False)
    await daemon.initialize(rootUri=workspace.as_uri(), **VIEW)
    listing = await daemon.request("grants/list")
    [approval] = [a for a in listing["approved"] if a["tool"] == "write_file"]
    assert approval["scope"] == "trusted directory"
    assert approval["workspace"] == "rw"
    assert approval["dirs"] == [{"path": str(workspace), "mode": "rw", "guest": "/workspace"}]
    assert await daemon.request("grants/revoke", {"tool": "write_file"}) == {"revoked": False}
    assert [a["tool"] for a in (await daemon.request("grants/list"))["approved"]] == ["write_file"]


async def test_an_unknown_id_is_invalid_params(start_daemon: StartDaemon, dropbox: Path) -> None:
    daemon = await serve(start_daemon, dropbox, **VIEW)
    with pytest.raises(RpcError) as unknown:
        await daemon.request("grants/answer", {"id": "hostile:000000000000:000000000000", "action": "Deny"})
    assert unknown.value.code == INVALID_PARAMS
    assert "no pending grant request with id 'hostile:000000000000:000000000000'" in unknown.value.message
    assert (await the_request(daemon))["denied"] is False


HUGE = "x" * 1_000_000


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("grants/list", {"pending": True}),
        ("grants/list", "all"),
        ("grants/answer", {"id": 7, "action": "Allow once"}),
        ("grants/answer", {"id": ["hostile"], "action": "Allow once"}),
        ("grants/answer", {"id": "hostile", "action": "allow once"}),
        ("grants/answer", {"id": "hostile", "action": None}),
        ("grants/answer", {"id": HUGE, "action": "Deny"}),
        ("grants/answer", {"id": "", "action": "Deny"}),
        ("grants/answer", {"id": "hostile", "action": "Deny", "scope": "everything"}),
        ("grants/answer", None),
        ("grants/revoke", {"tool": {"name": "hostile"}}),
        ("grants/revoke", {"tool": HUGE}),
        ("grants/revoke", {"tool": ""}),
        ("grants/revoke", []),
    ],
)
async def test_hostile_params_are_invalid_params(
    start_daemon: StartDaemon, dropbox: Path, method: str, params: Any
) -> None:
    daemon = await serve(start_daemon, dropbox, **VIEW)
    with pytest.raises(RpcError) as refused:
        await daemon.request(method, params)
    assert refused.value.code == INVALID_PARAMS
    assert len(refused.value.message) < 1000  # a huge value is not said back
    assert (await the_request(daemon))["denied"] is False  # nothing was answered, and it serves on
