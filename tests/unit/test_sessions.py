"""Sessions over one core: each grants its own workspace to the tools that ask for it, and asks its
person before a call that may write."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_agent.common.errors import QuotaExceeded
from llama_agent.config import DaemonConfig, Locations
from llama_agent.core import Core, open_core
from llama_agent.services.agent.loop import AgentRequest
from llama_agent.services.consent.calls import DECLINED, CannotAsk, Choice, ConsentRequest
from llama_agent.services.sessions import NobodyToAsk
from llama_agent.services.tenants.config import TenantLimits
from llama_agent.services.tenants.quotas import TenantQuota
from llama_agent.services.tools.settings import ToolSettings

from tests.scripted_model import ScriptedModel, answer, call
from tests.unit.test_agent_loop import Recorder


class Person:
    """An `Asker` whose person gives `answers` in order; it records each question, and what the
    face had been told by then (`told`: the run's events so far)."""

    def __init__(self, *answers: Choice, told: Recorder | None = None) -> None:
        self.answers = list(answers)
        self.asked: list[ConsentRequest] = []
        self.told_before: list[list[tuple[str, Any]]] = []
        self._told = told

    async def ask(self, request: ConsentRequest) -> Choice:
        self.asked.append(request)
        self.told_before.append(list(self._told.events) if self._told else [])
        if not self.answers:
            raise AssertionError(f"asked once too often: {request.title()}")
        return self.answers.pop(0)


def folder(tmp_path: Path, name: str, which: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "which.txt").write_text(which)
    return directory


@pytest.fixture
def tools(tmp_path: Path, test_tools: Path) -> Path:
    directory = tmp_path / "tools"
    directory.mkdir()
    shutil.copy2(test_tools / "hostile.wasm", directory / "hostile.wasm")
    return directory


def core_for(tools: Path, tmp_path: Path, cache_dir: Path, mode: str, *turns: str) -> Core:
    """A core serving the hostile tool from a trusted directory, its policy asking for the workspace."""
    (tools / "hostile.policy.toml").write_text(f'workspace = "{mode}"\n')
    config = DaemonConfig(
        tools=ToolSettings(trusted_directories=(tools,)),
        locations=Locations(cache_dir, config_dir=tmp_path / "config"),
    )
    return open_core(config, watch=False, model_loader=ScriptedModel(list(turns)).loader())


async def hostile(session: Any, action: str, target: str = "") -> tuple[bool, str]:
    result = await session.invoke("hostile", {"action": action, "target": target})
    return result.invocation.is_error, result.texts()[0]


async def test_two_sessions_each_get_their_own_folder(tmp_path: Path, tools: Path, cache_dir: Path) -> None:
    left, right = folder(tmp_path, "left", "L"), folder(tmp_path, "right", "R")
    with core_for(tools, tmp_path, cache_dir, "ro") as core:
        first = core.open_session(workspace=left, asker=Person())
        second = core.open_session(workspace=right, asker=Person())
        none = core.open_session(workspace=None, asker=Person())
        assert await hostile(first, "read", "/workspace/which.txt") == (False, "read: L")
        assert await hostile(second, "read", "/workspace/which.txt") == (False, "read: R")
        assert await hostile(first, "read", "/workspace/which.txt") == (False, "read: L")
        assert (await hostile(none, "list", "/workspace"))[1].startswith("denied:")
        [granted] = first.tools()["hostile"].grants.dirs
        assert (granted.host, granted.guest, granted.mode) == (left, "/workspace", "ro")
        assert second.tools()["hostile"].grants.dirs[0].host == right
        assert core.toolbox.snapshot.tools["hostile"].grants.dirs == ()  # the core's own: none


async def test_a_workspace_that_cannot_be_granted_is_refused_saying_why(
    tmp_path: Path,
    tools: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    with core_for(tools, tmp_path, cache_dir, "rw") as core:
        cases = {
            tmp_path: "a read-write grant of",  # holds the tools directory
            home: "would give away",
            tmp_path / "missing": "cannot use it: No such file or directory",
            tools / "hostile.wasm": "it is not a directory",
        }
        for workspace, why in cases.items():
            person = Person()
            session = core.open_session(workspace=workspace, asker=person)
            is_error, text = await hostile(session, "write", "/workspace/x.txt")
            assert is_error and text.startswith("not run: ") and why in text, (workspace, text)
            view = session.tools()["hostile"]
            assert view.policy_error is not None and why in view.policy_error
            assert view.grants.dirs == () and person.asked == []
    assert not (tmp_path / "x.txt").exists()


async def test_a_folder_replaced_after_the_session_opened_is_not_granted(
    tmp_path: Path, tools: Path, cache_dir: Path
) -> None:
    project = folder(tmp_path, "project", "P")
    with core_for(tools, tmp_path, cache_dir, "ro") as core:
        session = core.open_session(workspace=project, asker=Person())
        assert await hostile(session, "read", "/workspace/which.txt") == (False, "read: P")
        project.rename(tmp_path / "was-project")
        project.symlink_to("/etc")
        is_error, text = await hostile(session, "read", "/workspace/passwd")
        assert is_error and "is no longer the directory that was granted" in text


async def test_a_call_that_may_write_runs_only_once_the_person_allows_it(
    tmp_path: Path, tools: Path, cache_dir: Path
) -> None:
    project = folder(tmp_path, "project", "P")
    written = project / "new.txt"
    with core_for(tools, tmp_path, cache_dir, "rw") as core:
        person = Person(Choice.REJECT, Choice.ALLOW_ONCE, Choice.ALLOW_ALWAYS)
        session = core.open_session(workspace=project, asker=person)
        assert await hostile(session, "write", "/workspace/new.txt") == (True, DECLINED)
        assert not written.exists()
        assert await hostile(session, "write", "/workspace/new.txt") == (False, "wrote /workspace/new.txt")
        assert written.read_text() == "written by a tool"
        written.unlink()
        assert await hostile(session, "write", "/workspace/new.txt") == (False, "wrote /workspace/new.txt")
        assert await hostile(session, "write", "/workspace/again.txt") == (
            False,
            "wrote /workspace/again.txt",
        )
        assert len(person.asked) == 3  # "always": not a fourth time
        first = person.asked[0]
        assert first.title() == f"hostile may write to '{project}'"
        assert [(path.argument, path.host) for path in first.paths] == [("target", written)]
        assert [(text.argument, text.text) for text in first.texts] == [("action", "write")]
        assert first.step is None  # the client asked for the call itself

        # Always is this session's: another session's person is asked.
        other = Person(Choice.REJECT)
        elsewhere = core.open_session(workspace=project, asker=other)
        assert await hostile(elsewhere, "write", "/workspace/third.txt") == (True, DECLINED)
        assert len(other.asked) == 1 and not (project / "third.txt").exists()


async def test_reading_needs_no_question_and_writes_approved_up_front_need_none(
    tmp_path: Path, tools: Path, cache_dir: Path
) -> None:
    project = folder(tmp_path, "project", "P")
    with core_for(tools, tmp_path, cache_dir, "ro") as core:
        reader = core.open_session(workspace=project, asker=Person())
        assert await hostile(reader, "read", "/workspace/which.txt") == (False, "read: P")
    with core_for(tools, tmp_path, cache_dir, "rw") as core:
        approved = core.open_session(workspace=project, asker=Person(), allow_writes=True)
        assert await hostile(approved, "write", "/workspace/up.txt") == (False, "wrote /workspace/up.txt")


async def test_where_nobody_can_be_asked_the_call_is_refused_saying_what_and_how(
    tmp_path: Path, tools: Path, cache_dir: Path
) -> None:
    project = folder(tmp_path, "project", "P")
    with core_for(tools, tmp_path, cache_dir, "rw") as core:
        session = core.open_session(workspace=project, asker=NobodyToAsk("start it with --allow-writes"))
        is_error, text = await hostile(session, "write", "/workspace/new.txt")
    assert is_error and not (project / "new.txt").exists()
    assert text == (
        f"not run: hostile would write the text 'write' (action, 5 characters) to "
        f"'{project / 'new.txt'}' (target). Writing needs the person's approval, and start it with "
        "--allow-writes"
    )


async def test_in_a_run_the_person_is_asked_after_the_face_heard_of_the_call(
    tmp_path: Path, tools: Path, cache_dir: Path
) -> None:
    project = folder(tmp_path, "project", "P")
    write = call("hostile", action="write", target="/workspace/new.txt")
    read = call("hostile", action="read", target="/workspace/which.txt")
    turns = [read, write, answer("not written")]
    with core_for(tools, tmp_path, cache_dir, "rw", *turns) as core:
        events = Recorder()
        person = Person(Choice.ALLOW_ONCE, Choice.REJECT, told=events)
        session = core.open_session(workspace=project, asker=person)
        result = await session.run(AgentRequest("read, then write", max_steps=3), events)
    assert [request.step for request in person.asked] == [0, 1]
    for step, told in enumerate(person.told_before):
        last_call = [event for event in told if event[0] == "call"][-1]
        assert last_call[1][0] == step and told[-1][0] == "call"  # announced, and nothing since
    assert result.steps[0].result == "read: P"
    declined = result.steps[1]
    assert declined.is_error and declined.result.startswith(DECLINED)
    assert "Answer without it, or call another tool." in declined.result
    assert not (project / "new.txt").exists()


async def test_an_asker_that_fails_to_ask_refuses_with_its_reason(
    tmp_path: Path, tools: Path, cache_dir: Path
) -> None:
    class Gone:
        async def ask(self, request: ConsentRequest) -> Choice:
            raise CannotAsk("the client could not ask: it went away")

    project = folder(tmp_path, "project", "P")
    with core_for(tools, tmp_path, cache_dir, "rw") as core:
        session = core.open_session(workspace=project, asker=Gone())
        is_error, text = await hostile(session, "write", "/workspace/new.txt")
    assert is_error and text.endswith("and the client could not ask: it went away")


@pytest.fixture
def grants_asked(tmp_path: Path, tools: Path, cache_dir: Path) -> Iterator[Core]:
    """A core whose hostile tool, in an untrusted directory, asks for the workspace: pending."""
    (tools / "hostile.policy.toml").write_text('workspace = "ro"\n')
    config = DaemonConfig(
        tools=ToolSettings(directories=(tools,)),
        locations=Locations(cache_dir, config_dir=tmp_path / "config"),
    )
    with open_core(config, watch=False) as core:
        yield core


async def test_a_sessions_grant_questions_name_its_workspace_and_its_answer_applies(
    tmp_path: Path, grants_asked: Core
) -> None:
    project = folder(tmp_path, "project", "P")
    session = grants_asked.open_session(workspace=project, asker=Person())
    [request] = session.grant_requests_to_ask()
    assert request.grants.dirs[0].host == project  # the workspace, named
    assert session.grant_requests_to_ask() == []  # asked once
    assert (await hostile(session, "read", "/workspace/which.txt"))[1].startswith("denied:")
    change = await session.answer_grant_request(request, "Allow once")
    assert change.changed == ("hostile",)
    assert await hostile(session, "read", "/workspace/which.txt") == (False, "read: P")
    # Another session (another client) is not asked: the approval is the process's.
    assert grants_asked.open_session(workspace=project, asker=Person()).grant_requests_to_ask() == []


# -- a tenant's quota, held by its sessions ---------------------------------------------------------


def tenant_quota(**limits: int) -> TenantQuota:
    every = {"max_sessions": 4, "max_concurrent_runs": 1, "calls_per_minute": 100, "tokens_per_day": 10**6}
    return TenantQuota(TenantLimits(**{**every, **limits}))


async def test_a_sessions_calls_count_against_its_tenants_calls_per_minute(
    tmp_path: Path, tools: Path, cache_dir: Path
) -> None:
    project = folder(tmp_path, "project", "P")
    quota = tenant_quota(calls_per_minute=2)
    with core_for(tools, tmp_path, cache_dir, "ro") as core:
        first = core.open_session(workspace=project, asker=Person(), quota=quota)
        second = core.open_session(workspace=project, asker=Person(), quota=quota)
        free = core.open_session(workspace=project, asker=Person())
        assert await hostile(first, "read", "/workspace/which.txt") == (False, "read: P")
        assert await hostile(second, "read", "/workspace/which.txt") == (False, "read: P")
        with pytest.raises(QuotaExceeded) as refused:
            await hostile(first, "read", "/workspace/which.txt")
        assert await hostile(free, "read", "/workspace/which.txt") == (False, "read: P")  # no quota
    assert refused.value.code == -32013 and refused.value.data is not None
    assert refused.value.data["quota"] == "calls_per_minute"
    assert 55 <= int(str(refused.value.data["retryAfter"])) <= 60


async def test_a_call_over_the_quota_ends_the_run_with_the_error_and_its_tokens_count(
    tmp_path: Path, tools: Path, cache_dir: Path
) -> None:
    project = folder(tmp_path, "project", "P")
    read = call("hostile", action="read", target="/workspace/which.txt")
    again = call("hostile", action="list", target="/workspace")
    quota = tenant_quota(calls_per_minute=1)
    with core_for(tools, tmp_path, cache_dir, "ro", read, again, answer("never")) as core:
        session = core.open_session(workspace=project, asker=Person(), quota=quota)
        conversation = session.conversations.new()
        events = Recorder()
        with pytest.raises(QuotaExceeded) as refused:
            await session.run(AgentRequest("read, then list", max_steps=3), events, conversation)
    assert refused.value.quota == "calls_per_minute"
    [made] = [event[1][1] for event in events.events if event[0] == "result"]
    assert made.result == "read: P"  # the first call was made; the second was refused
    [recorded] = conversation.turns
    assert recorded.outcome == "failed" and [step.result for step in recorded.steps] == ["read: P"]
    usage = quota.usage()
    assert usage.runs == 0 and usage.calls_in_window == 1
    assert usage.tokens_in_window > 0  # both turns the model took, though the run failed


async def test_a_run_is_refused_before_it_starts_over_tokens_or_concurrent_runs(
    tmp_path: Path, tools: Path, cache_dir: Path
) -> None:
    quota = tenant_quota(tokens_per_day=10, max_concurrent_runs=1)
    with core_for(tools, tmp_path, cache_dir, "ro", answer("first"), answer("second")) as core:
        session = core.open_session(workspace=None, asker=Person(), quota=quota)
        async with quota.run_slot():  # another run of the tenant's
            with pytest.raises(QuotaExceeded) as busy:
                await session.run(AgentRequest("hello", tool_choice="none"), Recorder())
        result = await session.run(AgentRequest("hello", tool_choice="none"), Recorder())
        assert result.answer == "first"
        assert quota.usage().tokens_in_window == result.prompt_tokens + result.completion_tokens > 10
        with pytest.raises(QuotaExceeded) as spent:
            await session.run(AgentRequest("hello", tool_choice="none"), Recorder())
    assert busy.value.quota == "max_concurrent_runs"
    assert spent.value.quota == "tokens_per_day"
    assert spent.value.retry_after > 86000  # the day's tokens leave the window a day on
