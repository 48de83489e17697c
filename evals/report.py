"""evals/RESULTS.md: the summary tables, then one row per task, then why each failure failed."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from evals.scoring import Rate, RunRecord, Score, Step, Summary
from evals.tasks import Task

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


def render_markdown(
    meta: Mapping[str, Any],
    tasks: Sequence[Task],
    records: Sequence[RunRecord],
    scores: Sequence[Score],
    summary: Summary,
    baseline: Mapping[str, Any] | None = None,
) -> str:
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
        + (f", selected with {meta['selection']}" if meta.get("selection") else ""),
        f"- Settings: agent/run defaults (temperature 0), maxSteps {meta.get('max_steps', 'default (5)')}; "
        "one daemon per task, on a fresh copy of `evals/workspace/`",
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
    if baseline is not None:
        lines += comparison(summary, baseline)
    lines += [
        "",
        "## Tasks",
        "",
        "| id | kind | pass | calls made | stop reason | s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for task, record, score in zip(tasks, records, scores, strict=True):
        stop = record.stop_reason or "error"
        calls = format_calls(record.steps)
        lines.append(
            f"| {task.id} | {task.kind} | {'yes' if score.success else 'no'} | {cell(calls)} | {stop} "
            f"| {record.seconds:.1f} |"
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
    return "\n".join(lines) + "\n"


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


def _rate_text(rate: Mapping[str, Any] | None) -> str:
    if not rate:
        return "-"
    return f"{rate['passed']}/{rate['total']} ({rate['percent']:.0f}%)"
