"""Runs the conversations of evals/conversations.toml against the real daemon.

One daemon per conversation, on a fresh copy of the workspace: `agent/newSession`, then each
turn's `agent/run` with that `sessionId`, in order. A cancelled turn's run is cancelled
(`$/cancelRequest`) as soon as its first `$/progress` report arrives (or after CANCEL_DELAY
seconds without one), then the next turn is sent. At the end `agent/history` says how the
daemon recorded each turn: a cancellation took when the run ended cancelled and the history,
when it can be read, has the turn as "cancelled".
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llama_agent.common.errors import REQUEST_CANCELLED
from llama_agent.services.agent.loop import AgentRequest

from evals.conversations import Conversation, ConversationTurn, turn_id
from evals.daemon import (
    RUN_TIMEOUT,
    DaemonExited,
    ReadyDaemon,
    Settings,
    fresh_workspace,
    ready_daemon,
    record_from_result,
    run_failure,
    unless_exited,
)
from evals.scoring import ConversationRecord, RunRecord, TurnRecord
from tests.rpc import DaemonSession, RpcError

# Cancel a turn this long after its agent/run was sent if no progress report came before.
CANCEL_DELAY = 2.0
SESSION_TIMEOUT = 60.0  # agent/newSession, agent/history


def _is_report(token: str) -> Callable[[Any], bool]:
    """Whether a `$/progress` notification's params are a report of the run on `token`."""

    def where(params: Any) -> bool:
        if not isinstance(params, dict) or params.get("token") != token:
            return False
        value = params.get("value")
        return isinstance(value, dict) and value.get("kind") == "report"

    return where


async def run_conversation(
    conversation: Conversation, settings: Settings, tools: Path, workspace: Path
) -> tuple[ConversationRecord, str]:
    """One conversation on its own daemon; returns its record and the model the daemon loaded."""
    async with ready_daemon(settings, tools, workspace) as daemon:
        record = await _converse(conversation, daemon, settings)
        return record, daemon.model


async def run_conversations(
    conversations: Sequence[Conversation],
    settings: Settings,
    tools: Path,
    scratch: Path,
    fixture: Path,
    on_done: Callable[[int, ConversationRecord], None] = lambda index, record: None,
) -> tuple[list[ConversationRecord], str | None]:
    """Each conversation on its own daemon and a fresh copy of `fixture` under `scratch`;
    `on_done(index, record)` after each (index from 1)."""
    records: list[ConversationRecord] = []
    model: str | None = None
    for index, conversation in enumerate(conversations, start=1):
        with fresh_workspace(fixture, scratch / f"conversation-{index:02d}") as workspace:
            record, model = await run_conversation(conversation, settings, tools, workspace)
        records.append(record)
        on_done(index, record)
    return records, model


async def _converse(
    conversation: Conversation, daemon: ReadyDaemon, settings: Settings
) -> ConversationRecord:
    session = daemon.session
    try:
        opened = await unless_exited(
            session, session.request("agent/newSession", {}, SESSION_TIMEOUT), SESSION_TIMEOUT
        )
        session_id = str(opened["sessionId"])
    except (RpcError, DaemonExited, TimeoutError, KeyError, TypeError) as error:
        daemon.healthy = False
        return _unrun(conversation, f"agent/newSession failed: {run_failure(error)}", daemon.startup_seconds)
    turns: list[TurnRecord] = []
    for index, turn in enumerate(conversation.turns):
        if not daemon.healthy:  # an earlier run timed out, or the daemon died
            turns.append(_unrun_turn(conversation.id, index, turn, "not run: an earlier turn failed"))
            continue
        params: dict[str, Any] = {
            "prompt": turn.prompt,
            "sessionId": session_id,
            "workDoneToken": f"eval-{turn_id(conversation.id, index)}",
        }
        if settings.max_steps is not None:
            params["maxSteps"] = settings.max_steps
        run = _cancelled_turn if turn.cancel else _scored_turn
        turns.append(await run(daemon, turn_id(conversation.id, index), params, settings))
    if daemon.healthy:
        turns = _with_outcomes(turns, await _history_outcomes(session, session_id))
    return ConversationRecord(conversation.id, tuple(turns), session_id, daemon.startup_seconds)


def _budget(settings: Settings) -> int:
    return AgentRequest.max_steps if settings.max_steps is None else settings.max_steps


def _failed(daemon: ReadyDaemon, record_id: str, begun: float, error: Exception) -> RunRecord:
    """The record of a run that failed; a timeout or a dead daemon ends the conversation."""
    if isinstance(error, DaemonExited | TimeoutError):
        daemon.healthy = False
    seconds = time.perf_counter() - begun
    return RunRecord(
        record_id, seconds=seconds, startup_seconds=daemon.startup_seconds, error=run_failure(error)
    )


async def _scored_turn(
    daemon: ReadyDaemon, record_id: str, params: dict[str, Any], settings: Settings
) -> TurnRecord:
    session, begun = daemon.session, time.perf_counter()
    try:
        result = await unless_exited(session, session.request("agent/run", params, RUN_TIMEOUT), RUN_TIMEOUT)
    except (RpcError, DaemonExited, TimeoutError) as error:
        return TurnRecord(_failed(daemon, record_id, begun, error))
    seconds = time.perf_counter() - begun
    return TurnRecord(
        record_from_result(record_id, result, seconds, daemon.startup_seconds, _budget(settings))
    )


async def _cancelled_turn(
    daemon: ReadyDaemon, record_id: str, params: dict[str, Any], settings: Settings
) -> TurnRecord:
    """Send the run, cancel it at its first progress report (or after CANCEL_DELAY), and see
    how it ended: with the request-cancelled error, or a result that says "cancelled"."""
    session, begun = daemon.session, time.perf_counter()
    request_id, answered = session.request_future("agent/run", params)
    reported = session.wait_for_notification(
        "$/progress", CANCEL_DELAY, where=_is_report(params["workDoneToken"])
    )
    with contextlib.suppress(TimeoutError, DaemonExited):
        await unless_exited(session, reported, CANCEL_DELAY)
    session.cancel(request_id)
    try:
        result = await unless_exited(session, answered, RUN_TIMEOUT)
    except RpcError as error:
        if error.code != REQUEST_CANCELLED:
            return TurnRecord(_failed(daemon, record_id, begun, error), cancelled=True)
        seconds = time.perf_counter() - begun
        ended = RunRecord(
            record_id, stop_reason="cancelled", seconds=seconds, startup_seconds=daemon.startup_seconds
        )
        return TurnRecord(ended, cancelled=True, cancel_took=True)
    except (DaemonExited, TimeoutError) as error:
        return TurnRecord(_failed(daemon, record_id, begun, error), cancelled=True)
    seconds = time.perf_counter() - begun
    finished = record_from_result(record_id, result, seconds, daemon.startup_seconds, _budget(settings))
    return TurnRecord(finished, cancelled=True, cancel_took=finished.stop_reason == "cancelled")


async def _history_outcomes(session: DaemonSession, session_id: str) -> list[str] | None:
    """The outcome agent/history recorded for each turn of the session; None if it cannot be read."""
    try:
        history = await unless_exited(
            session,
            session.request("agent/history", {"sessionId": session_id}, SESSION_TIMEOUT),
            SESSION_TIMEOUT,
        )
        return [str(turn["outcome"]) for turn in history["turns"]]
    except (RpcError, DaemonExited, TimeoutError, KeyError, TypeError):
        return None


def _with_outcomes(turns: list[TurnRecord], outcomes: list[str] | None) -> list[TurnRecord]:
    """The turns with the outcomes the daemon recorded (only when there is one per turn, so that
    they line up); a cancellation took only if the history has that turn as "cancelled"."""
    if outcomes is None or len(outcomes) != len(turns):
        return turns
    return [
        dataclasses.replace(turn, outcome=outcome, cancel_took=turn.cancel_took and outcome == "cancelled")
        for turn, outcome in zip(turns, outcomes, strict=True)
    ]


def _unrun(conversation: Conversation, error: str, startup: float) -> ConversationRecord:
    """The record of a conversation none of whose turns ran."""
    turns = [
        _unrun_turn(conversation.id, index, turn, error) for index, turn in enumerate(conversation.turns)
    ]
    return ConversationRecord(conversation.id, tuple(turns), startup_seconds=startup)


def _unrun_turn(conversation_id: str, index: int, turn: ConversationTurn, error: str) -> TurnRecord:
    return TurnRecord(RunRecord(turn_id(conversation_id, index), error=error), cancelled=turn.cancel)
