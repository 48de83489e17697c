"""Runs the evaluation suite against the real daemon; writes evals/RESULTS.md and evals/results.json.

    .venv/bin/python -m evals.run [--model PATH] [--only ID]... [--kind KIND]... [--split SPLIT]...
    (or: make eval)

Each task gets its own daemon (`llama-agent serve` over stdio) on a fresh copy of
evals/workspace/ and a private copy of the bundled tools in which write_file is granted the
workspace read-write. Measured on 2 cores: a daemon start costs 2-3 s (components from the
compile cache, model load), next to 7-15 s for an agent/run, and a shared daemon gave the same
answers and about the same run times. So one daemon per task: writes cannot leak, and
`--only ID` reproduces what the whole run got for ID. Then each conversation of
evals/conversations.toml gets a daemon of its own in the same way (evals/dialogues.py).
Not part of `make test`: it measures the agent's quality, it does not assert it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_agent import __version__
from llama_agent.config import BUNDLED_TOOLS_DIR
from llama_agent.services.agent.loop import AgentRequest

from evals.conversations import (
    DEFAULT_CONVERSATIONS_FILE,
    Conversation,
    check_conversations,
    load_conversations,
    select_conversations,
)
from evals.daemon import (
    RUN_TIMEOUT,
    DaemonExited,
    EvalError,
    Settings,
    fresh_workspace,
    prepare_tools,
    ready_daemon,
    record_from_result,
    run_failure,
    unless_exited,
)
from evals.dialogues import run_conversations
from evals.report import (
    ConversationResults,
    conversation_summary_to_json,
    format_calls,
    render_markdown,
    summary_to_json,
    tuning_baseline,
)
from evals.scoring import (
    ConversationRecord,
    ConversationScore,
    RunRecord,
    Score,
    TurnRecord,
    score_conversation,
    score_task,
    summarize,
    summarize_conversations,
    summarize_splits,
)
from evals.tasks import (
    DEFAULT_TASK_FILES,
    KINDS,
    SPLITS,
    Task,
    TaskError,
    check_suite,
    load_task_files,
    select_tasks,
)
from tests.rpc import RpcError

DESCRIPTION = (
    "Run the evaluation suite (tasks, then conversations) against the real daemon; "
    "write evals/RESULTS.md and results.json."
)
HERE = Path(__file__).resolve().parent
WORKSPACE_FIXTURE = HERE / "workspace"
DEFAULT_OUT = HERE / "RESULTS.md"
DEFAULT_JSON = HERE / "results.json"
# The run before the agent's quality work (issue 13): RESULTS.md compares every run with it.
DEFAULT_BASELINE = HERE / "baseline.json"


# -- one task -----------------------------------------------------------------------------------


async def run_task(task: Task, settings: Settings, tools: Path, workspace: Path) -> tuple[RunRecord, str]:
    """One task on its own daemon; returns the record and the model path the daemon loaded."""
    async with ready_daemon(settings, tools, workspace) as daemon:
        params: dict[str, Any] = {"prompt": task.prompt, "workDoneToken": f"eval-{task.id}"}
        if settings.max_steps is not None:
            params["maxSteps"] = settings.max_steps
        session, begun = daemon.session, time.perf_counter()
        try:
            result = await unless_exited(
                session, session.request("agent/run", params, RUN_TIMEOUT), RUN_TIMEOUT
            )
        except (RpcError, DaemonExited, TimeoutError) as error:
            daemon.healthy = False
            seconds = time.perf_counter() - begun
            failed = RunRecord(task.id, seconds=seconds, startup_seconds=daemon.startup_seconds)
            return dataclasses.replace(failed, error=run_failure(error)), daemon.model
        budget = AgentRequest.max_steps if settings.max_steps is None else settings.max_steps
        seconds = time.perf_counter() - begun
        return record_from_result(task.id, result, seconds, daemon.startup_seconds, budget), daemon.model


async def run_tasks(
    tasks: Sequence[Task], settings: Settings, tools: Path, scratch: Path
) -> tuple[list[RunRecord], str | None]:
    records: list[RunRecord] = []
    model: str | None = None
    for index, task in enumerate(tasks, start=1):
        with fresh_workspace(WORKSPACE_FIXTURE, scratch / f"workspace-{index:02d}") as workspace:
            record, model = await run_task(task, settings, tools, workspace)
        records.append(record)
        score = score_task(task, record)
        verdict = "pass" if score.success else ("ERROR" if record.error else "fail")
        print(
            f"[{index:>{len(str(len(tasks)))}}/{len(tasks)}] {task.id:<24} {verdict:<5} "
            f"{format_calls(record.steps, 50)}  {record.seconds:.1f} s",
            flush=True,
        )
    return records, model


@dataclass(frozen=True)
class Run:
    """What a run (or a rescore) has to report."""

    meta: dict[str, Any]
    tasks: list[Task]
    records: list[RunRecord]
    conversations: list[Conversation]
    conversation_records: list[ConversationRecord]


async def run_suite(
    tasks: Sequence[Task], conversations: Sequence[Conversation], settings: Settings, tools_source: Path
) -> tuple[list[RunRecord], list[ConversationRecord], str | None]:
    """The tasks, then the conversations, each on its own daemon; and the model they loaded."""
    with tempfile.TemporaryDirectory(prefix="llama-agent-eval-") as scratch:
        tools = prepare_tools(tools_source, Path(scratch) / "tools")
        records, model = await run_tasks(tasks, settings, tools, Path(scratch))

        def done(index: int, record: ConversationRecord) -> None:
            conversation = conversations[index - 1]
            score = score_conversation(conversation, record)
            verdict = "pass" if score.success else "fail"
            seconds = sum(turn.run.seconds for turn in record.turns)
            marks = " ".join(
                _mark(turn, s.success) for turn, s in zip(record.turns, score.turns, strict=True)
            )
            print(
                f"[conversation {index}/{len(conversations)}] {conversation.id:<24} {verdict:<5} "
                f"{marks}  {seconds:.1f} s",
                flush=True,
            )

        dialogue_records, dialogue_model = await run_conversations(
            conversations, settings, tools, Path(scratch), WORKSPACE_FIXTURE, done
        )
    return records, dialogue_records, model or dialogue_model


def _mark(turn: TurnRecord, success: bool) -> str:
    if turn.run.error is not None:
        return "ERROR"
    if turn.cancelled:
        return "cancelled" if success else "not-cancelled"
    return "pass" if success else "fail"


# -- output -------------------------------------------------------------------------------------


def model_file(reported: str | None, settings: Settings) -> Path | None:
    if reported:
        return Path(reported)
    return settings.model


def write_outputs(
    run: Run, out: Path, json_out: Path, baseline: dict[str, Any] | None = None
) -> tuple[list[Score], list[ConversationScore]]:
    """Write the report and the raw records; `baseline`, an earlier run's tuning figures
    (report.tuning_baseline), adds a before-and-after table."""
    tasks, records = run.tasks, run.records
    scores = [score_task(task, record) for task, record in zip(tasks, records, strict=True)]
    summary = summarize(tasks, records, scores)
    conversation_scores = [
        score_conversation(conversation, record)
        for conversation, record in zip(run.conversations, run.conversation_records, strict=True)
    ]
    dialogues = (
        ConversationResults(
            run.conversations,
            run.conversation_records,
            conversation_scores,
            summarize_conversations(run.conversations, conversation_scores),
        )
        if run.conversations
        else None
    )
    meta = {**run.meta, "json_name": os.path.relpath(json_out, out.parent)}
    document = {
        "meta": meta,
        "summary": summary_to_json(summary),
        "splits": {
            name: summary_to_json(value) for name, value in summarize_splits(tasks, records, scores).items()
        },
        "tasks": [
            {
                "split": task.split,
                "kind": task.kind,
                "prompt": task.prompt,
                "expectedTools": list(task.tools),
                **record.to_json(),
                "score": dataclasses.asdict(score),
            }
            for task, record, score in zip(tasks, records, scores, strict=True)
        ],
        "conversationSummary": conversation_summary_to_json(dialogues.summary) if dialogues else None,
        "conversations": [
            conversation_to_json(conversation, record, score)
            for conversation, record, score in zip(
                run.conversations, run.conversation_records, conversation_scores, strict=True
            )
        ],
    }
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        render_markdown(meta, tasks, records, scores, summary, baseline, dialogues), encoding="utf-8"
    )
    return scores, conversation_scores


def conversation_to_json(
    conversation: Conversation, record: ConversationRecord, score: ConversationScore
) -> dict[str, Any]:
    turns = []
    for turn, turn_record, turn_score in zip(conversation.turns, record.turns, score.turns, strict=True):
        expected = turn.expected
        turns.append(
            {
                "prompt": turn.prompt,
                "cancel": turn.cancel,
                "kind": expected.kind if expected else None,
                "expectedTools": list(expected.tools) if expected else [],
                **turn_record.to_json(),
                "success": turn_score.success,
                "score": dataclasses.asdict(turn_score.score) if turn_score.score else None,
            }
        )
    return {
        "id": conversation.id,
        "split": conversation.split,
        "success": score.success,
        "sessionId": record.session_id,
        "startupSeconds": record.startup_seconds,
        "followUpReuse": {
            "cachedPromptTokens": score.follow_up_cached_tokens,
            "promptTokens": score.follow_up_prompt_tokens,
            "ratio": score.reuse,
        },
        "turns": turns,
    }


def describe_model(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {"model": None, "model_name": "?", "model_bytes": None}
    try:
        size: int | None = path.stat().st_size
    except OSError:
        size = None
    return {"model": str(path), "model_name": path.name, "model_bytes": size}


def rescore(path: Path, tasks: Sequence[Task], conversations: Sequence[Conversation]) -> Run:
    """The tasks, conversations and records of an earlier results.json, to be scored again with
    the current task and conversation files."""
    document = json.loads(path.read_text(encoding="utf-8"))
    by_id = {task.id: task for task in tasks}
    unknown = [entry["id"] for entry in document["tasks"] if entry["id"] not in by_id]
    if unknown:
        raise TaskError(f"{path}: task {unknown[0]!r} is not in the task file any more")
    records = [RunRecord.from_json(entry) for entry in document["tasks"]]
    conversations_by_id = {conversation.id: conversation for conversation in conversations}
    chosen, conversation_records = [], []
    for entry in document.get("conversations", []):
        conversation = conversations_by_id.get(entry["id"])
        if conversation is None or len(conversation.turns) != len(entry["turns"]):
            raise TaskError(
                f"{path}: conversation {entry['id']!r} is not in the conversation file as it was run"
            )
        chosen.append(conversation)
        conversation_records.append(
            ConversationRecord(
                entry["id"],
                tuple(TurnRecord.from_json(turn) for turn in entry["turns"]),
                entry.get("sessionId"),
                float(entry.get("startupSeconds", 0.0)),
            )
        )
    return Run(
        dict(document["meta"]),
        [by_id[record.id] for record in records],
        records,
        chosen,
        conversation_records,
    )


# -- command line -------------------------------------------------------------------------------


def select_suite(
    tasks: Sequence[Task],
    conversations: Sequence[Conversation],
    only: Sequence[str] = (),
    kinds: Sequence[str] = (),
    splits: Sequence[str] = (),
    with_conversations: bool = True,
    with_tasks: bool = True,
) -> tuple[list[Task], list[Conversation]]:
    """What to run. `only` names tasks or conversations: naming only tasks runs no conversation,
    and the other way round. `kinds` selects tasks, so it runs no conversation; `splits` selects
    both."""
    task_ids = {task.id for task in tasks}
    conversation_ids = {conversation.id for conversation in conversations}
    unknown = [name for name in only if name not in task_ids | conversation_ids]
    if unknown:
        raise TaskError(f"no task or conversation with id {unknown[0]!r}")
    only_tasks = [name for name in only if name in task_ids]
    only_conversations = [name for name in only if name in conversation_ids]
    run_tasks = with_tasks and not (only and not only_tasks)
    run_conversations = with_conversations and not kinds and not (only and not only_conversations)
    return (
        select_tasks(tasks, only_tasks, kinds, splits) if run_tasks else [],
        select_conversations(conversations, only_conversations, splits) if run_conversations else [],
    )


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m evals.run", description=DESCRIPTION)
    cli.add_argument("--model", type=Path, metavar="PATH", help="GGUF model (default: the embedded one)")
    cli.add_argument(
        "--backend",
        choices=["llama", "openai"],
        default="llama",
        help="openai: the daemons use an OpenAI-compatible server: --base-url, or else llama_cpp.server "
        "started on 127.0.0.1 with the same GGUF (reports go to RESULTS-openai.md, results-openai.json)",
    )
    cli.add_argument("--base-url", metavar="URL", help="the server of --backend openai")
    cli.add_argument(
        "--tasks",
        type=Path,
        action="append",
        metavar="FILE",
        help="task file (repeatable; default: evals/tasks.toml and evals/tasks-fresh.toml)",
    )
    cli.add_argument(
        "--conversations",
        type=Path,
        default=DEFAULT_CONVERSATIONS_FILE,
        metavar="FILE",
        help="conversation file",
    )
    cli.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="ID",
        help="run this task or conversation (repeatable)",
    )
    cli.add_argument(
        "--kind",
        action="append",
        default=[],
        choices=list(KINDS),
        help="run tasks of this kind (and no conversation)",
    )
    cli.add_argument(
        "--split",
        action="append",
        default=[],
        choices=list(SPLITS),
        help="run the tasks and conversations of this split (repeatable; default all)",
    )
    which = cli.add_mutually_exclusive_group()
    which.add_argument("--no-conversations", action="store_true", help="run the tasks only")
    which.add_argument("--conversations-only", action="store_true", help="run the conversations only")
    cli.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="FILE", help="Markdown report")
    cli.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="FILE", help="raw per-task records")
    cli.add_argument("--cache-dir", type=Path, metavar="DIR", help="the daemon's cache (default: its own)")
    cli.add_argument("--max-steps", type=int, metavar="N", help="agent/run maxSteps (default: the daemon's)")
    cli.add_argument("--tools-dir", type=Path, default=BUNDLED_TOOLS_DIR, metavar="DIR", help="built tools")
    cli.add_argument(
        "--rescore", type=Path, metavar="FILE", help="score an earlier results.json again instead of running"
    )
    cli.add_argument(
        "--baseline",
        type=Path,
        default=DEFAULT_BASELINE,
        metavar="FILE",
        help="an earlier results.json to compare with (default: %(default)s; 'none' for no comparison)",
    )
    return cli


@contextlib.contextmanager
def model_server(args: argparse.Namespace, settings: Settings) -> Iterator[Settings]:
    """`settings` for the backend asked for: with openai and no --base-url, llama_cpp.server is
    started on loopback with the same GGUF, for as long as the suite runs."""
    if args.backend != "openai":
        yield settings
        return
    if args.base_url:
        yield dataclasses.replace(settings, base_url=args.base_url)
        return
    from llama_agent.config import default_cache_dir
    from llama_agent.runtime.models.llama import default_model_path

    from tests.model_server import llama_server

    model = settings.model or default_model_path(settings.cache_dir or default_cache_dir())
    try:
        with llama_server(model, "--interrupt_requests", "False") as url:
            yield dataclasses.replace(settings, base_url=url)
    except RuntimeError as error:
        raise EvalError(str(error)) from error


def task_files(args: argparse.Namespace) -> list[Path]:
    """The task files asked for with --tasks; without any, the suite's and the fresh set's."""
    return list(args.tasks or DEFAULT_TASK_FILES)


def load_suite(args: argparse.Namespace) -> tuple[list[Task], list[Conversation]]:
    """Every task and conversation, checked: their files, their coverage, ids used by both."""
    tasks = load_task_files(task_files(args))
    check_suite(tasks)
    conversations = load_conversations(args.conversations)
    check_conversations(conversations)
    shared = sorted({task.id for task in tasks} & {conversation.id for conversation in conversations})
    if shared:
        raise TaskError(f"{shared[0]!r} is the id of a task and of a conversation")
    return tasks, conversations


def _selection(args: argparse.Namespace) -> str:
    chosen = [f"--only {name}" for name in args.only] + [f"--kind {kind}" for kind in args.kind]
    chosen += [f"--split {split}" for split in args.split]
    chosen += ["--no-conversations"] * args.no_conversations + [
        "--conversations-only"
    ] * args.conversations_only
    return " ".join(chosen)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.backend == "openai":
        args.out = HERE / "RESULTS-openai.md" if args.out == DEFAULT_OUT else args.out
        args.json = HERE / "results-openai.json" if args.json == DEFAULT_JSON else args.json
        # Side by side with the in-process backend's last run, rather than with the old baseline.
        args.baseline = DEFAULT_JSON if args.baseline == DEFAULT_BASELINE else args.baseline
    try:
        all_tasks, all_conversations = load_suite(args)
        if args.rescore is not None:
            run = rescore(args.rescore, all_tasks, all_conversations)
        else:
            tasks, conversations = select_suite(
                all_tasks,
                all_conversations,
                args.only,
                args.kind,
                args.split,
                with_conversations=not args.no_conversations,
                with_tasks=not args.conversations_only,
            )
            if not tasks and not conversations:
                raise TaskError("no task or conversation is selected")
    except (TaskError, OSError, ValueError) as error:
        print(f"evals: {error}", file=sys.stderr)
        return 2
    if args.max_steps is not None and not 0 <= args.max_steps <= 100:
        print("evals: --max-steps must be from 0 to 100", file=sys.stderr)
        return 2
    if args.rescore is None:
        settings = Settings(model=args.model, cache_dir=args.cache_dir, max_steps=args.max_steps)
        print(
            f"evals: {len(tasks)} tasks and {len(conversations)} conversations, one daemon each "
            f"({args.backend} backend)",
            flush=True,
        )
        started = time.perf_counter()
        try:
            with model_server(args, settings) as served:
                records, conversation_records, reported = asyncio.run(
                    run_suite(tasks, conversations, served, args.tools_dir)
                )
        except EvalError as error:
            print(f"evals: {error}", file=sys.stderr)
            return 1
        meta = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            **describe_model(model_file(reported, settings)),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "daemon_version": __version__,
            "tasks_file": ", ".join(_shown(path) for path in task_files(args)),
            "conversations_file": _shown(args.conversations),
            "selection": _selection(args),
            "max_steps": args.max_steps
            if args.max_steps is not None
            else f"default ({AgentRequest.max_steps})",
            "wall_seconds": time.perf_counter() - started,
            "backend": args.backend,
        }
        run = Run(meta, tasks, records, conversations, conversation_records)
    baseline_file = None if str(args.baseline) == "none" or not args.baseline.exists() else args.baseline
    baseline = (
        tuning_baseline(json.loads(baseline_file.read_text(encoding="utf-8")), all_tasks)
        if baseline_file
        else None
    )
    scores, conversation_scores = write_outputs(run, args.out, args.json, baseline)
    report = args.out.read_text(encoding="utf-8")
    if "## Summary" in report and "## Tasks" in report:
        print("\n" + report[report.index("## Summary") : report.index("## Tasks")].rstrip() + "\n")
    passed = sum(score.success for score in scores)
    conversations_passed = sum(score.success for score in conversation_scores)
    print(
        f"evals: {passed}/{len(scores)} tasks and {conversations_passed}/{len(conversation_scores)} "
        f"conversations passed; wrote {_shown(args.out)} and {_shown(args.json)}"
    )
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
