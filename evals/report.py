"""evals/RESULTS.md: the summary tables (overall, held-out vs tuning), one row per task, why each
failure failed, then the conversations; and the summaries' shape in results.json."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evals.conversations import Conversation
from evals.scoring import (
    ConversationRecord,
    ConversationScore,
    ConversationSummary,
    Rate,
    RunRecord,
    Score,
    Step,
    Summary,
    summarize,
    summarize_splits,
)
from evals.tasks import KINDS, Task

ANSWER_CHARS = 120
CALL_CHARS = 70


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_call(step: Step, limit: int = CALL_CHARS) -> str:
    arguments = ", ".join(
        f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in step.arguments.items()
    )
    return cut(f"{step.tool}({arguments})", limit) + (" ✗" if step.is_error else "")


def format_calls(steps: Sequence[Step], limit: int = CALL_CHARS) -> str:
    """The calls in order; a call repeated identically in a row is shown once, with its count."""
    shown: list[tuple[str, int]] = []
    for step in steps:
        text = format_call(step, limit)
        if shown and shown[-1][0] == text:
            shown[-1] = (text, shown[-1][1] + 1)
        else:
            shown.append((text, 1))
    return " → ".join(text + (f" (x{count})" if count > 1 else "") for text, count in shown) or "(none)"


def _number(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _ids(ids: Sequence[str]) -> str:
    return f"{len(ids)}" + (f" ({', '.join(ids)})" if ids else "")


def _size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    return f"{size / 1024 / 1024:.0f} MiB" if size >= 1024 * 1024 else f"{size} bytes"


@dataclass(frozen=True)
class ConversationResults:
    """The conversations run, their records and scores (parallel), and their summary."""

    conversations: Sequence[Conversation]
    records: Sequence[ConversationRecord]
    scores: Sequence[ConversationScore]
    summary: ConversationSummary


def render_markdown(
    meta: Mapping[str, Any],
    tasks: Sequence[Task],
    records: Sequence[RunRecord],
    scores: Sequence[Score],
    summary: Summary,
    baseline: Mapping[str, Any] | None = None,
    dialogues: ConversationResults | None = None,
) -> str:
    """The report. `baseline` is an earlier run's figures for the tuning split (`meta`, `summary`:
    see `tuning_baseline`), compared with this run's tuning split."""
    splits = summarize_splits(tasks, records, scores)
    lines = [
        "# Agent evaluation",
        "",
        "Written by `make eval` (`python -m evals.run`); the raw per-task records are in "
        f"`{meta.get('json_name', 'results.json')}`. See [README.md](README.md) for what is measured.",
        "",
        f"- Date: {meta.get('date', '?')}",
        f"- Model: `{meta.get('model_name', '?')}` ({_size(meta.get('model_bytes'))}), "
        f"{meta.get('backend', 'llama')} backend"
        + (" (llama_cpp.server on loopback, the same GGUF)" if meta.get("backend") == "openai" else ""),
        f"- Machine: {meta.get('cpus', '?')} CPUs",
        f"- Tasks: {summary.tasks} from `{meta.get('tasks_file', '?')}`"
        + f" ({', '.join(f'{value.tasks} {name}' for name, value in splits.items()) or 'none'})"
        + (f", selected with {meta['selection']}" if meta.get("selection") else ""),
        f"- Conversations: {dialogues.summary.conversations if dialogues else 0}"
        + (f" from `{meta.get('conversations_file', '?')}`" if dialogues else ""),
        f"- Settings: agent/run defaults (temperature 0), maxSteps {meta.get('max_steps', 'default (5)')}; "
        "one daemon per task and per conversation, on a fresh copy of `evals/workspace/`",
        f"- Whole run: {_number(meta.get('wall_seconds'), 0, ' s')} wall time",
        "",
        "## Summary",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| success, overall | {summary.success} |",
        f"| tool choice right (first call, or no call for no_tool) | {summary.tool_choice['all']} |",
        f"| arguments right (tasks whose expected calls were made) | {summary.arguments} |",
        f"| answer right | {summary.answers} |",
        f"| unneeded calls (of {summary.calls} calls) | {summary.unneeded_calls} in "
        f"{summary.tasks_with_unneeded_calls} tasks; {summary.repeated_calls} identical repeats, "
        f"{summary.calls_in_no_tool_tasks} in no_tool tasks |",
        f"| tool calls that returned an error | {summary.tool_errors} |",
        f"| runs that hit maxSteps (or spent the whole tool budget) | {_ids(summary.max_steps)} |",
        f"| runs that hit maxTokens (a turn cut off) | {_ids(summary.max_tokens)} |",
        f"| runs cut short: a runaway repetition, or a turn that did not parse | {_ids(summary.cut_short)} |",
        f"| runs that failed outright (RPC error, timeout) | {_ids(summary.run_errors)} |",
        f"| median wall time per task (agent/run) | {_number(summary.median_seconds, 1, ' s')} |",
        f"| median daemon start until model and tools ready | "
        f"{_number(summary.median_startup_seconds, 1, ' s')} |",
        f"| median completion tokens per task | {_number(summary.median_completion_tokens, 0)} |",
        f"| median prompt tokens per task | {_number(summary.median_prompt_tokens, 0)} |",
        "",
        "## Per kind",
        "",
        "| kind | success | tool choice |",
        "| --- | --- | --- |",
    ]
    for kind, success in summary.per_kind.items():
        lines.append(f"| {kind} | {success} | {summary.tool_choice[kind]} |")
    lines += [
        "",
        "## Per tool (tasks that expect the tool)",
        "",
        "| tool | success |",
        "| --- | --- |",
    ]
    for tool, success in summary.per_tool.items():
        lines.append(f"| {tool} | {success} |")
    lines += split_table(splits, summary)
    if baseline is not None and "tuning" in splits:
        lines += comparison(splits["tuning"], baseline)
    if baseline is not None and baseline.get("heldout") and "heldout" in splits:
        lines += held_out_comparison(splits["heldout"], baseline["heldout"])
    lines += [
        "",
        "## Tasks",
        "",
        "| id | split | kind | pass | calls made | stop reason | s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task, record, score in zip(tasks, records, scores, strict=True):
        stop = record.stop_reason or "error"
        calls = format_calls(record.steps)
        lines.append(
            f"| {task.id} | {task.split} | {task.kind} | {'yes' if score.success else 'no'} | {cell(calls)} "
            f"| {stop} | {record.seconds:.1f} |"
        )
    failed = [(task, record, score) for task, record, score in zip(tasks, records, scores, strict=True)]
    failed = [row for row in failed if not row[2].success]
    if failed:
        lines += [
            "",
            "## Failures",
            "",
            "| id | why | answer |",
            "| --- | --- | --- |",
        ]
        for task, record, score in failed:
            why = "; ".join(score.reasons) or "?"
            answer = cut(record.answer, ANSWER_CHARS) if record.answer.strip() else "(empty)"
            lines.append(f"| {task.id} | {cell(cut(why, 240))} | {cell(answer)} |")
    if dialogues is not None:
        lines += conversation_section(dialogues)
    return "\n".join(lines) + "\n"


SPLIT_TITLES = {"tuning": "tuning", "heldout": "held-out", "fresh": "fresh"}


def split_table(splits: Mapping[str, Summary], summary: Summary) -> list[str]:
    """Held-out vs tuning, side by side (tuning, held-out, fresh, all: the splits run): the
    held-out tasks were never tuned on, the fresh ones never even read while tuning, so the gap
    between the tuning column and the others is how much of the tuning did not generalise."""
    if not splits:
        return []
    names = list(splits)
    rows = [
        ("tasks", [str(splits[name].tasks) for name in names], str(summary.tasks)),
        ("success", [str(splits[name].success) for name in names], str(summary.success)),
        (
            "tool choice right",
            [str(splits[name].tool_choice["all"]) for name in names],
            str(summary.tool_choice["all"]),
        ),
        ("arguments right", [str(splits[name].arguments) for name in names], str(summary.arguments)),
        ("answer right", [str(splits[name].answers) for name in names], str(summary.answers)),
    ]
    rows += [
        (
            f"success, {kind}",
            [str(splits[name].per_kind.get(kind, "n/a")) for name in names],
            str(summary.per_kind.get(kind, "n/a")),
        )
        for kind in KINDS
        if kind in summary.per_kind
    ]
    return [
        "",
        "## Held-out vs tuning",
        "",
        "| measure | " + " | ".join(SPLIT_TITLES[name] for name in names) + " | all |",
        "| --- | " + " | ".join("---" for _ in names) + " | --- |",
        *[f"| {measure} | {' | '.join(values)} | {total} |" for measure, values, total in rows],
    ]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _turn_marks(conversation: Conversation, score: ConversationScore) -> str:
    """One mark per turn: ✓ passed, ✗ failed, ⊘ cancelled (and the cancellation took), ⊘✗ not."""
    marks = []
    for turn, turn_score in zip(conversation.turns, score.turns, strict=True):
        if turn.cancel:
            marks.append("⊘" if turn_score.success else "⊘✗")
        else:
            marks.append("✓" if turn_score.success else "✗")
    return " ".join(marks)


def conversation_section(results: ConversationResults) -> list[str]:
    summary = results.summary
    lines = [
        "",
        "## Conversations",
        "",
        "Each conversation runs in one daemon session; a turn is scored as a task is, a cancelled "
        "turn (⊘) only on whether the cancellation took. Follow-up reuse: of the prompt tokens of "
        "the turns after the first (not cancelled), the share the daemon reused rather than evaluated.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| whole conversations succeeded | {summary.success} |",
        *[
            f"| whole conversations succeeded, {SPLIT_TITLES[name]} | {value} |"
            for name, value in summary.per_split.items()
        ],
        f"| turns succeeded (scored turns) | {summary.turns} |",
        *[
            f"| turns succeeded, {SPLIT_TITLES[name]} | {value} |"
            for name, value in summary.turns_per_split.items()
        ],
        f"| cancellations that took | {summary.cancellations} |",
        f"| turns resending a cancelled message that succeeded | {summary.resends} |",
        f"| follow-up prompt reuse (cached / prompt tokens) | {summary.follow_up_cached_tokens} / "
        f"{summary.follow_up_prompt_tokens} ({_percent(summary.reuse)}) |",
        "",
        "| id | split | turns | pass | turn results | follow-up reuse | s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = list(zip(results.conversations, results.records, results.scores, strict=True))
    for conversation, record, score in rows:
        seconds = sum(turn.run.seconds for turn in record.turns)
        lines.append(
            f"| {conversation.id} | {conversation.split} | {len(conversation.turns)} "
            f"| {'yes' if score.success else 'no'} | {_turn_marks(conversation, score)} "
            f"| {_percent(score.reuse)} | {seconds:.1f} |"
        )
    failures = [
        (turn_record, turn_score)
        for _, record, score in rows
        for turn_record, turn_score in zip(record.turns, score.turns, strict=True)
        if not turn_score.success
    ]
    if failures:
        lines += [
            "",
            "### Failed turns",
            "",
            "| turn | calls made | why | answer |",
            "| --- | --- | --- | --- |",
        ]
        for turn_record, turn_score in failures:
            why = _turn_failure(turn_record.run, turn_score.score, turn_record.outcome)
            answer = (
                cut(turn_record.run.answer, ANSWER_CHARS) if turn_record.run.answer.strip() else "(empty)"
            )
            calls = format_calls(turn_record.run.steps)
            lines.append(f"| {turn_record.run.id} | {cell(calls)} | {cell(cut(why, 240))} | {cell(answer)} |")
    return lines


def _turn_failure(run: RunRecord, score: Score | None, outcome: str | None) -> str:
    if score is not None:
        return "; ".join(score.reasons) or "?"
    if run.error is not None:
        return f"cancelled turn failed: {run.error}"
    recorded = f", recorded as {outcome!r}" if outcome else ""
    return f"the cancellation did not take (stop reason {run.stop_reason or '?'}{recorded})"


def rate_json(value: Rate) -> dict[str, Any]:
    return {"passed": value.passed, "total": value.total, "percent": value.percent}


def comparison(summary: Summary, baseline: Mapping[str, Any]) -> list[str]:
    """A before/after table against an earlier run's results.json (its `summary` and `meta`)."""
    before = baseline["summary"]
    rows = [("success, overall", before["success"], rate_json(summary.success))]
    rows += [
        (f"success, {kind}", before["perKind"].get(kind), rate_json(value))
        for kind, value in summary.per_kind.items()
    ]
    rows += [
        (f"success, {tool}", before["perTool"].get(tool), rate_json(value))
        for tool, value in summary.per_tool.items()
    ]
    rows += [
        (f"tool choice, {kind}", before["toolChoice"].get(kind), rate_json(value))
        for kind, value in summary.tool_choice.items()
    ]
    rows += [("arguments right", before["arguments"], rate_json(summary.arguments))]
    lines = [
        "",
        f"## Before and after (before: the run of {baseline['meta'].get('date', '?')}, "
        f"{baseline['meta'].get('backend', 'llama')} backend)",
        "",
        "| measure | before | now |",
        "| --- | --- | --- |",
        *[f"| {name} | {_rate_text(old)} | {_rate_text(new)} |" for name, old, new in rows],
        f"| runs that hit maxSteps | {len(before['maxSteps'])} | {len(summary.max_steps)} |",
        f"| runs that hit maxTokens | {len(before['maxTokens'])} | {len(summary.max_tokens)} |",
        f"| identical repeated calls | {before['repeatedCalls']} | {summary.repeated_calls} |",
        f"| median wall time per task | {_number(before['medianSeconds'], 1, ' s')} | "
        f"{_number(summary.median_seconds, 1, ' s')} |",
        f"| median prompt tokens per task | {_number(before['medianPromptTokens'], 0)} | "
        f"{_number(summary.median_prompt_tokens, 0)} |",
        f"| median completion tokens per task | {_number(before['medianCompletionTokens'], 0)} | "
        f"{_number(summary.median_completion_tokens, 0)} |",
    ]
    return lines


def held_out_comparison(summary: Summary, before: Mapping[str, Any]) -> list[str]:
    """The held-out split before and after, when the earlier run had one."""
    rows = [
        ("success", before["success"], rate_json(summary.success)),
        ("tool choice right", before["toolChoice"].get("all"), rate_json(summary.tool_choice["all"])),
        ("arguments right", before["arguments"], rate_json(summary.arguments)),
        ("answer right", before["answers"], rate_json(summary.answers)),
    ]
    return [
        "",
        "## Held-out tasks, before and after",
        "",
        "| measure | before | now |",
        "| --- | --- | --- |",
        *[f"| {name} | {_rate_text(old)} | {_rate_text(new)} |" for name, old, new in rows],
    ]


def _rate_text(rate: Mapping[str, Any] | None) -> str:
    if not rate or rate.get("percent") is None:
        return "-"
    return f"{rate['passed']}/{rate['total']} ({rate['percent']:.0f}%)"


# -- results.json -------------------------------------------------------------------------------


def summary_to_json(summary: Summary) -> dict[str, Any]:
    return {
        "tasks": summary.tasks,
        "success": rate_json(summary.success),
        "perTool": {name: rate_json(value) for name, value in summary.per_tool.items()},
        "perKind": {name: rate_json(value) for name, value in summary.per_kind.items()},
        "toolChoice": {name: rate_json(value) for name, value in summary.tool_choice.items()},
        "arguments": rate_json(summary.arguments),
        "answers": rate_json(summary.answers),
        "unneededCalls": summary.unneeded_calls,
        "repeatedCalls": summary.repeated_calls,
        "toolErrors": summary.tool_errors,
        "maxSteps": summary.max_steps,
        "maxTokens": summary.max_tokens,
        "cutShort": summary.cut_short,
        "runErrors": summary.run_errors,
        "medianSeconds": summary.median_seconds,
        "medianCompletionTokens": summary.median_completion_tokens,
        "medianPromptTokens": summary.median_prompt_tokens,
    }


def conversation_summary_to_json(summary: ConversationSummary) -> dict[str, Any]:
    return {
        "conversations": summary.conversations,
        "success": rate_json(summary.success),
        "perSplit": {name: rate_json(value) for name, value in summary.per_split.items()},
        "turns": rate_json(summary.turns),
        "turnsPerSplit": {name: rate_json(value) for name, value in summary.turns_per_split.items()},
        "cancellations": rate_json(summary.cancellations),
        "resends": rate_json(summary.resends),
        "followUpReuse": {
            "cachedPromptTokens": summary.follow_up_cached_tokens,
            "promptTokens": summary.follow_up_prompt_tokens,
            "ratio": summary.reuse,
        },
    }


def tuning_baseline(baseline: Mapping[str, Any], tasks: Sequence[Task]) -> dict[str, Any]:
    """An earlier results.json's figures for the tuning split, to set beside this run's: its
    `splits.tuning` summary when it has one. A file from before the split has none; its tasks are
    taken as tuning by id: if the current task file holds some of them out, they are left out,
    and the summary is made again from the scores stored with the others."""
    meta = dict(baseline.get("meta", {}))
    if "tuning" in baseline.get("splits", {}):
        held_out = baseline["splits"].get("heldout")
        return {"meta": meta, "summary": baseline["splits"]["tuning"], "heldout": held_out}
    heldout = {task.id for task in tasks if task.split != "tuning"}
    entries = [entry for entry in baseline["tasks"] if entry["id"] not in heldout]
    if len(entries) == len(baseline["tasks"]):
        return {"meta": meta, "summary": baseline["summary"]}
    return {"meta": meta, "summary": summary_from_stored(entries)}


def summary_from_stored(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The summary (as results.json has it) of some of an earlier run's tasks, from the records
    and scores stored with them: not scored again, so the figures are the ones that run got."""
    tasks = [
        Task(entry["id"], entry["kind"], entry.get("prompt", ""), tuple(entry["expectedTools"]))
        for entry in entries
    ]
    records = [RunRecord.from_json(entry) for entry in entries]
    return summary_to_json(summarize(tasks, records, [stored_score(entry) for entry in entries]))


def stored_score(entry: Mapping[str, Any]) -> Score:
    """The score a results.json stored with a task (fields added to Score since take their defaults)."""
    known = {field.name for field in dataclasses.fields(Score)}
    stored = {name: value for name, value in entry["score"].items() if name in known}
    return Score(**{**stored, "reasons": tuple(stored.get("reasons", ()))})
