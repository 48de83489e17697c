"""Scoring: pure functions from a task and the record of its run to a score, and from many
scores to the summary figures of evals/RESULTS.md. No I/O, no daemon: unit-testable as is."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evals.conversations import Conversation
from evals.tasks import BUNDLED_TOOLS, KINDS, SPLITS, Rule, Task

# A turn cut off while it was calling a tool: the call never happened, but it was chosen.
CUT_CALL = re.compile(r'\s*\{\s*"tool"\s*:\s*"([^"]+)"')

# -- what a run produced ------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    tool: str
    arguments: dict[str, Any]
    is_error: bool
    result: str = ""  # the tool's output, cut (for reading failures, not scored)

    def to_json(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "arguments": self.arguments,
            "isError": self.is_error,
            "result": self.result,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Step:
        return cls(data["tool"], dict(data["arguments"]), bool(data["isError"]), data.get("result", ""))


@dataclass(frozen=True)
class RunRecord:
    """One task's agent/run: what the agent did and what it cost. `error` is set when the run
    itself failed (an RPC error, a timeout, a daemon that died); then the rest is empty."""

    id: str
    steps: tuple[Step, ...] = ()
    answer: str = ""
    stop_reason: str = ""  # "answer", "maxSteps" or "maxTokens"; "" after an error
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0  # the agent/run request, wall time
    startup_seconds: float = 0.0  # the daemon's start until the model and tools were ready
    prompt_format: str = ""
    max_steps: int | None = None  # the run's maxSteps (its tool budget), when known
    error: str | None = None
    cached_prompt_tokens: int = 0  # of prompt_tokens, those reused rather than evaluated

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "steps": [step.to_json() for step in self.steps],
            "answer": self.answer,
            "stopReason": self.stop_reason,
            "usage": {
                "promptTokens": self.prompt_tokens,
                "completionTokens": self.completion_tokens,
                "cachedPromptTokens": self.cached_prompt_tokens,
            },
            "seconds": self.seconds,
            "startupSeconds": self.startup_seconds,
            "promptFormat": self.prompt_format,
            "maxSteps": self.max_steps,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        usage = data.get("usage", {})
        return cls(
            id=data["id"],
            steps=tuple(Step.from_json(step) for step in data.get("steps", [])),
            answer=data.get("answer", ""),
            stop_reason=data.get("stopReason", ""),
            prompt_tokens=int(usage.get("promptTokens", 0)),
            completion_tokens=int(usage.get("completionTokens", 0)),
            seconds=float(data.get("seconds", 0.0)),
            startup_seconds=float(data.get("startupSeconds", 0.0)),
            prompt_format=data.get("promptFormat", ""),
            max_steps=data.get("maxSteps"),
            error=data.get("error"),
            cached_prompt_tokens=int(usage.get("cachedPromptTokens", 0)),
        )


# -- one task -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    task_id: str
    kind: str
    success: bool
    tool_choice: bool  # first call is the first expected tool; for no_tool: no call
    sequence: bool  # the calls start with the expected tools, in order; for no_tool: no call
    arguments: bool  # every argument rule of every expected call passes, and none returned an error
    arguments_judged: bool  # the task expects calls and the expected sequence was made
    answer: bool  # answer_contains (or, without it, a non-empty answer)
    unneeded_calls: int  # beyond the expected ones, any for no_tool, or identical repeats
    repeated_calls: int  # calls identical (tool and arguments) to an earlier one
    tool_errors: int  # calls whose result was an error
    hit_max_steps: bool  # stopReason maxSteps, or the whole tool budget spent
    hit_max_tokens: bool  # stopReason maxTokens: a turn was cut off
    cut_short: bool = False  # stopReason repetition or invalidTurn: a turn ran away or did not parse
    reasons: tuple[str, ...] = ()  # why it failed, for the report
    forbidden_calls: int = 0  # calls of the task's forbid_tools
    split: str = "tuning"


def check_rule(rule: Rule, arguments: Mapping[str, Any]) -> bool:
    """Whether one call's `arguments` satisfy `rule` (its `call` index is not looked at)."""
    if rule.field in arguments:
        value = arguments[rule.field]
    elif rule.has_default:
        value = rule.default
    else:
        return False
    if rule.check == "equals":
        return same_value(value, rule.expected)
    if rule.check == "one_of":
        return any(same_value(value, option) for option in rule.expected)
    if rule.check == "contains":
        return isinstance(value, str) and str(rule.expected).casefold() in value.casefold()
    if rule.check == "regex":
        return isinstance(value, str) and re.search(str(rule.expected), value) is not None
    if rule.check == "number_equals":
        number = as_number(value)
        return number is not None and abs(number - float(rule.expected)) <= rule.tolerance
    raise ValueError(f"unknown check {rule.check!r}")


def same_value(value: Any, expected: Any) -> bool:
    """Equality of JSON values that keeps types apart: true is not 1, "1" is not 1."""
    if isinstance(value, bool) or isinstance(expected, bool):
        return isinstance(value, bool) and isinstance(expected, bool) and value == expected
    if is_number(value) and is_number(expected):
        return bool(value == expected)
    return type(value) is type(expected) and bool(value == expected)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_number(value: Any) -> float | None:
    if is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def call_key(step: Step) -> str:
    return json.dumps([step.tool, step.arguments], sort_keys=True, ensure_ascii=False)


def count_unneeded(task: Task, steps: Sequence[Step]) -> tuple[int, int]:
    """(unneeded calls, identical repeats): a call is unneeded when it comes after the expected
    ones (every call, for no_tool) or repeats an earlier call exactly; counted once either way."""
    seen: set[str] = set()
    unneeded = repeated = 0
    for index, step in enumerate(steps):
        key = call_key(step)
        repeat = key in seen
        seen.add(key)
        repeated += repeat
        unneeded += repeat or index >= len(task.tools)
    return unneeded, repeated


def score_task(task: Task, record: RunRecord) -> Score:
    called = [step.tool for step in record.steps]
    expected = list(task.tools)
    reasons: list[str] = []
    if record.error is not None:
        reasons.append(f"run failed: {record.error}")
    if expected:
        tool_choice = bool(called) and called[0] == expected[0]
        sequence = called[: len(expected)] == expected
        if not sequence:
            reasons.append(f"called {' → '.join(called) or 'no tool'}, expected {' → '.join(expected)}")
    else:
        tool_choice = sequence = not called
        if called:
            reasons.append(f"called {' → '.join(called)}, expected no tool")
    arguments = True
    for rule in task.rules:
        step = record.steps[rule.call] if rule.call < len(record.steps) else None
        if step is None or step.tool != task.tools[rule.call] or not check_rule(rule, step.arguments):
            arguments = False
            if step is not None and step.tool == task.tools[rule.call]:
                got = repr(step.arguments.get(rule.field, "(missing)"))
                reasons.append(f"argument rule failed: {rule.describe()}, got {got}")
    for index, tool in enumerate(task.tools):
        step = record.steps[index] if index < len(record.steps) else None
        if step is not None and step.tool == tool and step.is_error:
            arguments = False
            reasons.append(f"call {index + 1} ({tool}) returned an error: {step.result[:100]}")
    if record.stop_reason == "maxTokens":
        attempted = CUT_CALL.match(record.answer)
        inside = f" inside a call to {attempted.group(1)}" if attempted else ""
        reasons.append(f"the last turn was cut off at maxTokens{inside}")
    if task.answer_contains:
        folded = record.answer.casefold()
        answer = any(text.casefold() in folded for text in task.answer_contains)
        if not answer and record.error is None:
            reasons.append(f"answer lacks all of {list(task.answer_contains)}")
    else:
        answer = bool(record.answer.strip())
        if not answer and record.error is None:
            reasons.append("empty answer")
    forbidden = [tool for tool in called if tool in task.forbid_tools]
    if forbidden:
        reasons.append(f"called {', '.join(dict.fromkeys(forbidden))}, which this request must not call")
    if record.error is not None:
        tool_choice = sequence = arguments = answer = False
    unneeded, repeated = count_unneeded(task, record.steps)
    return Score(
        task_id=task.id,
        kind=task.kind,
        success=sequence and arguments and answer and not forbidden,
        tool_choice=tool_choice,
        sequence=sequence,
        arguments=arguments,
        arguments_judged=bool(expected) and sequence,
        answer=answer,
        unneeded_calls=unneeded,
        repeated_calls=repeated,
        tool_errors=sum(step.is_error for step in record.steps),
        hit_max_steps=record.stop_reason == "maxSteps"
        or (record.max_steps is not None and len(record.steps) >= record.max_steps),
        hit_max_tokens=record.stop_reason == "maxTokens",
        cut_short=record.stop_reason in ("repetition", "invalidTurn"),
        reasons=tuple(reasons),
        forbidden_calls=len(forbidden),
        split=task.split,
    )


# -- many tasks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    passed: int
    total: int

    @property
    def percent(self) -> float | None:
        return 100.0 * self.passed / self.total if self.total else None

    def __str__(self) -> str:
        percent = self.percent
        return "n/a" if percent is None else f"{self.passed}/{self.total} ({percent:.0f}%)"


def rate(flags: Sequence[bool]) -> Rate:
    return Rate(sum(flags), len(flags))


@dataclass(frozen=True)
class Summary:
    tasks: int
    success: Rate
    per_tool: dict[str, Rate]
    per_kind: dict[str, Rate]
    tool_choice: dict[str, Rate]  # "all" and per kind
    arguments: Rate  # over tasks whose expected calls were made
    answers: Rate  # over every task
    unneeded_calls: int
    tasks_with_unneeded_calls: int
    repeated_calls: int
    calls_in_no_tool_tasks: int
    calls: int
    tool_errors: int
    max_steps: list[str] = field(default_factory=list)  # ids
    max_tokens: list[str] = field(default_factory=list)
    cut_short: list[str] = field(default_factory=list)
    run_errors: list[str] = field(default_factory=list)
    median_seconds: float | None = None
    median_startup_seconds: float | None = None
    median_completion_tokens: float | None = None
    median_prompt_tokens: float | None = None
    total_seconds: float = 0.0


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(tasks: Sequence[Task], records: Sequence[RunRecord], scores: Sequence[Score]) -> Summary:
    """The figures of a run; `tasks`, `records` and `scores` are parallel lists."""
    if not len(tasks) == len(records) == len(scores):
        raise ValueError("tasks, records and scores must be parallel lists")
    rows = list(zip(tasks, records, scores, strict=True))
    per_tool = {
        tool: rate([score.success for task, _, score in rows if tool in task.tools])
        for tool in BUNDLED_TOOLS
        if any(tool in task.tools for task in tasks)
    }
    per_kind = {
        kind: rate([score.success for task, _, score in rows if task.kind == kind])
        for kind in KINDS
        if any(task.kind == kind for task in tasks)
    }
    tool_choice = {"all": rate([score.tool_choice for score in scores])}
    tool_choice |= {
        kind: rate([score.tool_choice for task, _, score in rows if task.kind == kind]) for kind in per_kind
    }
    ran = [record for record in records if record.error is None]
    return Summary(
        tasks=len(tasks),
        success=rate([score.success for score in scores]),
        per_tool=per_tool,
        per_kind=per_kind,
        tool_choice=tool_choice,
        arguments=rate([score.arguments for score in scores if score.arguments_judged]),
        answers=rate([score.answer for score in scores]),
        unneeded_calls=sum(score.unneeded_calls for score in scores),
        tasks_with_unneeded_calls=sum(score.unneeded_calls > 0 for score in scores),
        repeated_calls=sum(score.repeated_calls for score in scores),
        calls_in_no_tool_tasks=sum(len(record.steps) for task, record, _ in rows if task.kind == "no_tool"),
        calls=sum(len(record.steps) for record in records),
        tool_errors=sum(score.tool_errors for score in scores),
        max_steps=[score.task_id for score in scores if score.hit_max_steps],
        max_tokens=[score.task_id for score in scores if score.hit_max_tokens],
        cut_short=[score.task_id for score in scores if score.cut_short],
        run_errors=[record.id for record in records if record.error is not None],
        median_seconds=_median([record.seconds for record in ran]),
        median_startup_seconds=_median([record.startup_seconds for record in ran]),
        median_completion_tokens=_median([record.completion_tokens for record in ran]),
        median_prompt_tokens=_median([record.prompt_tokens for record in ran]),
        total_seconds=sum(record.seconds + record.startup_seconds for record in records),
    )


def summarize_splits(
    tasks: Sequence[Task], records: Sequence[RunRecord], scores: Sequence[Score]
) -> dict[str, Summary]:
    """`summarize` for each split that has a task: "tuning", "heldout", then "fresh"."""
    summaries: dict[str, Summary] = {}
    for split in SPLITS:
        chosen = [index for index, task in enumerate(tasks) if task.split == split]
        if chosen:
            summaries[split] = summarize(
                [tasks[i] for i in chosen], [records[i] for i in chosen], [scores[i] for i in chosen]
            )
    return summaries


# -- conversations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnRecord:
    """One turn of a conversation: its agent/run, and for a turn the runner cancelled, whether
    the cancellation took (the run ended cancelled, and the session's history, when read, says
    so too)."""

    run: RunRecord
    cancelled: bool = False
    cancel_took: bool = False
    outcome: str | None = None  # what agent/history recorded for the turn, when it was read

    def to_json(self) -> dict[str, Any]:
        return {
            **self.run.to_json(),
            "cancelled": self.cancelled,
            "cancelTook": self.cancel_took,
            "outcome": self.outcome,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TurnRecord:
        return cls(
            RunRecord.from_json(data),
            bool(data.get("cancelled", False)),
            bool(data.get("cancelTook", False)),
            data.get("outcome"),
        )


@dataclass(frozen=True)
class ConversationRecord:
    """A conversation's turns, one record per turn of the conversation (a turn that never ran,
    after the daemon failed, has a record with its `error`)."""

    id: str
    turns: tuple[TurnRecord, ...]
    session_id: str | None = None
    startup_seconds: float = 0.0


@dataclass(frozen=True)
class TurnScore:
    index: int  # from 0
    score: Score | None  # None for a cancelled turn: it is not scored as a task
    cancel_took: bool | None = None  # for a cancelled turn

    @property
    def success(self) -> bool:
        return self.score.success if self.score is not None else bool(self.cancel_took)


@dataclass(frozen=True)
class ConversationScore:
    conversation_id: str
    split: str
    turns: tuple[TurnScore, ...]
    # Follow-up turns (after the first, not cancelled, run without an error): prompt tokens
    # reused from the session's earlier turns, and all their prompt tokens.
    follow_up_cached_tokens: int
    follow_up_prompt_tokens: int

    @property
    def success(self) -> bool:
        """Every scored turn succeeded and every cancellation took."""
        return all(turn.success for turn in self.turns)

    @property
    def reuse(self) -> float | None:
        return reuse_ratio(self.follow_up_cached_tokens, self.follow_up_prompt_tokens)


def reuse_ratio(cached: int, prompt: int) -> float | None:
    return cached / prompt if prompt else None


def score_conversation(conversation: Conversation, record: ConversationRecord) -> ConversationScore:
    if len(record.turns) != len(conversation.turns):
        raise ValueError(
            f"{conversation.id}: {len(record.turns)} turn records for {len(conversation.turns)} turns"
        )
    turns = []
    cached = prompt = 0
    for index, (turn, turn_record) in enumerate(zip(conversation.turns, record.turns, strict=True)):
        if turn.expected is None:
            turns.append(TurnScore(index, None, turn_record.cancel_took))
            continue
        turns.append(TurnScore(index, score_task(turn.expected, turn_record.run)))
        if index >= 1 and turn_record.run.error is None:
            cached += turn_record.run.cached_prompt_tokens
            prompt += turn_record.run.prompt_tokens
    return ConversationScore(conversation.id, conversation.split, tuple(turns), cached, prompt)


@dataclass(frozen=True)
class ConversationSummary:
    conversations: int
    success: Rate  # whole conversations
    per_split: dict[str, Rate]  # whole conversations, per split
    turns: Rate  # scored turns
    turns_per_split: dict[str, Rate]
    cancellations: Rate  # cancelled turns whose cancellation took
    resends: Rate  # scored turns that resend a cancelled message with a new one
    follow_up_cached_tokens: int
    follow_up_prompt_tokens: int

    @property
    def reuse(self) -> float | None:
        """The prompt reuse of follow-up turns: their cached prompt tokens over all their prompt tokens."""
        return reuse_ratio(self.follow_up_cached_tokens, self.follow_up_prompt_tokens)


def summarize_conversations(
    conversations: Sequence[Conversation], scores: Sequence[ConversationScore]
) -> ConversationSummary:
    """The figures of the conversations run; parallel lists."""
    if len(conversations) != len(scores):
        raise ValueError("conversations and scores must be parallel lists")
    splits = [split for split in SPLITS if any(score.split == split for score in scores)]
    scored = [(score.split, turn) for score in scores for turn in score.turns if turn.score is not None]
    resending = [
        turn_score.success
        for conversation, score in zip(conversations, scores, strict=True)
        for turn, turn_score in zip(conversation.turns, score.turns, strict=True)
        if turn.resends_cancelled
    ]
    return ConversationSummary(
        conversations=len(scores),
        success=rate([score.success for score in scores]),
        per_split={split: rate([s.success for s in scores if s.split == split]) for split in splits},
        turns=rate([turn.success for _, turn in scored]),
        turns_per_split={split: rate([t.success for s, t in scored if s == split]) for split in splits},
        cancellations=rate(
            [bool(turn.cancel_took) for s in scores for turn in s.turns if turn.score is None]
        ),
        resends=rate(resending),
        follow_up_cached_tokens=sum(score.follow_up_cached_tokens for score in scores),
        follow_up_prompt_tokens=sum(score.follow_up_prompt_tokens for score in scores),
    )
