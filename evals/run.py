"""Runs the evaluation suite against the real daemon; writes evals/RESULTS.md and evals/results.json.

    .venv/bin/python -m evals.run [--model PATH] [--only ID]... [--kind KIND]...   (or: make eval)

Each task gets its own daemon (`llama-agent serve` over stdio) on a fresh copy of
evals/workspace/ and a private copy of the bundled tools in which write_file is granted the
workspace read-write. Measured on 2 cores: a daemon start costs 2-3 s (components from the
compile cache, model load), next to 7-15 s for an agent/run, and a shared daemon gave the same
answers and about the same run times. So one daemon per task: writes cannot leak, and
`--only ID` reproduces what the whole run got for ID.
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
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_agent import __version__
from llama_agent.config import BUNDLED_TOOLS_DIR
from llama_agent.services.agent.loop import AgentRequest

from evals.report import format_calls, rate_json, render_markdown
from evals.scoring import RunRecord, Score, Step, score_task, summarize
from evals.tasks import (
    BUNDLED_TOOLS,
    DEFAULT_TASKS_FILE,
    KINDS,
    Task,
    TaskError,
    check_suite,
    load_tasks,
    select_tasks,
)
from tests.rpc import DaemonSession, RpcError

DESCRIPTION = "Run the evaluation suite against the real daemon; write evals/RESULTS.md and results.json."
HERE = Path(__file__).resolve().parent
WORKSPACE_FIXTURE = HERE / "workspace"
DEFAULT_OUT = HERE / "RESULTS.md"
DEFAULT_JSON = HERE / "results.json"
# The run before the agent's quality work (issue 13): RESULTS.md compares every run with it.
DEFAULT_BASELINE = HERE / "baseline.json"
# The first start may compile every component (a cold compile cache: minutes), later ones hit it.
READY_TIMEOUT = 900.0
RUN_TIMEOUT = 600.0
SHUTDOWN_TIMEOUT = 30.0
RESULT_CHARS = 2000  # tool output kept in results.json, per call
MODEL_MESSAGE = "llama-agent: model "
# Tools that must see the workspace, and how.
WORKSPACE_GRANTS = {"read_file": "ro", "list_dir": "ro", "search_text": "ro", "write_file": "rw"}


class EvalError(RuntimeError):
    """The suite cannot run at all (no built tools, a model that does not load, ...)."""


@dataclass(frozen=True)
class Settings:
    model: Path | None = None
    cache_dir: Path | None = None
    max_steps: int | None = None
    base_url: str | None = None  # the openai backend, served from here


# -- set-up -------------------------------------------------------------------------------------


def prepare_tools(source: Path, target: Path) -> Path:
    """A copy of the bundled tools and their policies, with write_file granted the workspace rw."""
    missing = [name for name in BUNDLED_TOOLS if not (source / f"{name}.wasm").is_file()]
    if missing:
        raise EvalError(f"{source} lacks {', '.join(missing)}: build the tools first (make components)")
    target.mkdir(parents=True)
    for file in sorted(source.iterdir()):
        if file.name.endswith((".wasm", ".policy.toml")):
            shutil.copy2(file, target / file.name)
    (target / "write_file.policy.toml").write_text(
        '# Granted by the evaluation, so that write_file can work.\nworkspace = "rw"\n', encoding="utf-8"
    )
    return target


def daemon_args(settings: Settings, tools: Path, workspace: Path) -> list[str]:
    # Trusted: the evaluation is the person approving the policies it wrote in `prepare_tools`;
    # and the writes of its tasks, to a scratch copy of the workspace, up front.
    args = ["--trusted-tools-dir", str(tools), "--workspace", str(workspace), "--allow-writes"]
    if settings.base_url is not None:
        args += ["--backend", "openai", "--base-url", settings.base_url]
    elif settings.model is not None:
        args += ["--model", str(settings.model)]
    if settings.cache_dir is not None:
        args += ["--cache-dir", str(settings.cache_dir)]
    return args


def _is_model_message(params: Any) -> bool:
    return isinstance(params, dict) and str(params.get("message", "")).startswith(MODEL_MESSAGE)


async def wait_ready(session: DaemonSession) -> str:
    """Wait until the model is loaded and every bundled tool is loaded with its workspace grant;
    returns the model's path as the daemon reports it."""
    message = await session.wait_for_notification(
        "window/logMessage", timeout=READY_TIMEOUT, where=_is_model_message
    )
    text = str(message["params"]["message"]).removeprefix(MODEL_MESSAGE)
    if text.startswith("not loaded"):
        raise EvalError(f"the daemon could not load the model: {text}")
    # "PATH (llama) loaded", or "NAME (openai at URL) loaded"
    model = text.removesuffix(" loaded").rsplit(" (", 1)[0]
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        listing = await session.request("tools/list", timeout=READY_TIMEOUT)
        if listing["failed"]:
            raise EvalError(f"tools failed to load: {listing['failed']}")
        tools = {tool["name"]: tool for tool in listing["tools"]}
        missing = sorted(set(BUNDLED_TOOLS) - set(tools))
        ungranted = [
            name
            for name, mode in WORKSPACE_GRANTS.items()
            if name in tools and not any(d["mode"] == mode for d in tools[name]["grants"]["dirs"])
        ]
        if not missing and not ungranted:
            return model
        if time.monotonic() > deadline:
            raise EvalError(
                f"tools never ready: missing {missing}, without their workspace grant {ungranted}"
            )
        await asyncio.sleep(0.05)


# -- one task -----------------------------------------------------------------------------------


def record_from_result(
    task: Task, result: dict[str, Any], seconds: float, startup: float, max_steps: int
) -> RunRecord:
    steps = tuple(
        Step(step["tool"], dict(step["arguments"]), bool(step["isError"]), str(step["result"])[:RESULT_CHARS])
        for step in result["steps"]
    )
    return RunRecord(
        id=task.id,
        steps=steps,
        answer=str(result["answer"]),
        stop_reason=str(result["stopReason"]),
        prompt_tokens=int(result["usage"]["promptTokens"]),
        completion_tokens=int(result["usage"]["completionTokens"]),
        seconds=seconds,
        startup_seconds=startup,
        prompt_format=str(result.get("promptFormat", "")),
        max_steps=max_steps,
    )


class DaemonExited(RuntimeError):
    pass


async def unless_exited(session: DaemonSession, work: Awaitable[Any], timeout: float) -> Any:
    """`work`'s result, or DaemonExited if the daemon dies first, or TimeoutError."""
    job = asyncio.ensure_future(work)
    exited = asyncio.ensure_future(session.process.wait())
    try:
        done, _ = await asyncio.wait({job, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        exited.cancel()
    if job in done:
        return job.result()
    job.cancel()
    if exited in done:
        await asyncio.sleep(0.2)  # the rest of its stderr
        tail = session.stderr.decode("utf-8", errors="replace").strip().splitlines()[-5:]
        raise DaemonExited(f"the daemon exited with code {session.process.returncode}: {' / '.join(tail)}")
    raise TimeoutError


async def run_task(task: Task, settings: Settings, tools: Path, workspace: Path) -> tuple[RunRecord, str]:
    """One task on its own daemon; returns the record and the model path the daemon loaded."""
    started = time.perf_counter()
    session = await DaemonSession.open(daemon_args(settings, tools, workspace))
    try:
        try:
            model: str = await unless_exited(session, wait_ready(session), READY_TIMEOUT)
        except (DaemonExited, TimeoutError) as error:
            raise EvalError(f"the daemon never got ready: {error or 'timed out'}") from error
        startup = time.perf_counter() - started
        params: dict[str, Any] = {"prompt": task.prompt, "workDoneToken": f"eval-{task.id}"}
        if settings.max_steps is not None:
            params["maxSteps"] = settings.max_steps
        begun = time.perf_counter()
        try:
            result = await unless_exited(
                session, session.request("agent/run", params, RUN_TIMEOUT), RUN_TIMEOUT
            )
        except (RpcError, DaemonExited, TimeoutError) as error:
            failed = RunRecord(task.id, seconds=time.perf_counter() - begun, startup_seconds=startup)
            reason = (
                f"agent/run timed out after {RUN_TIMEOUT:.0f} s"
                if isinstance(error, TimeoutError)
                else str(error)
            )
            return dataclasses.replace(failed, error=reason), model
        budget = AgentRequest.max_steps if settings.max_steps is None else settings.max_steps
        record = record_from_result(task, result, time.perf_counter() - begun, startup, budget)
        if session.violations:
            print(
                f"evals: {task.id}: protocol violations: {session.violations[:3]}",
                file=sys.stderr,
                flush=True,
            )
        with contextlib.suppress(TimeoutError, RpcError):
            await session.shutdown_and_exit(SHUTDOWN_TIMEOUT)
        return record, model
    finally:
        await session.kill()


async def run_tasks(
    tasks: Sequence[Task], settings: Settings, tools_source: Path
) -> tuple[list[RunRecord], str | None]:
    records: list[RunRecord] = []
    model: str | None = None
    with tempfile.TemporaryDirectory(prefix="llama-agent-eval-") as scratch:
        tools = prepare_tools(tools_source, Path(scratch) / "tools")
        for index, task in enumerate(tasks, start=1):
            workspace = Path(scratch) / f"workspace-{index:02d}"
            shutil.copytree(WORKSPACE_FIXTURE, workspace)
            try:
                record, model = await run_task(task, settings, tools, workspace)
            finally:
                shutil.rmtree(workspace, ignore_errors=True)
            records.append(record)
            score = score_task(task, record)
            verdict = "pass" if score.success else ("ERROR" if record.error else "fail")
            print(
                f"[{index:>{len(str(len(tasks)))}}/{len(tasks)}] {task.id:<24} {verdict:<5} "
                f"{format_calls(record.steps, 50)}  {record.seconds:.1f} s",
                flush=True,
            )
    return records, model


# -- output -------------------------------------------------------------------------------------


def model_file(reported: str | None, settings: Settings) -> Path | None:
    if reported:
        return Path(reported)
    return settings.model


def write_outputs(
    meta: dict[str, Any],
    tasks: Sequence[Task],
    records: Sequence[RunRecord],
    out: Path,
    json_out: Path,
    baseline: Path | None = None,
) -> list[Score]:
    """Write the report and the raw records; `baseline`, an earlier results.json, adds a
    before-and-after table."""
    scores = [score_task(task, record) for task, record in zip(tasks, records, strict=True)]
    summary = summarize(tasks, records, scores)
    meta = {**meta, "json_name": os.path.relpath(json_out, out.parent)}
    document = {
        "meta": meta,
        "summary": {
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
        },
        "tasks": [
            {
                "kind": task.kind,
                "prompt": task.prompt,
                "expectedTools": list(task.tools),
                **record.to_json(),
                "score": dataclasses.asdict(score),
            }
            for task, record, score in zip(tasks, records, scores, strict=True)
        ],
    }
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    baseline_document = json.loads(baseline.read_text(encoding="utf-8")) if baseline else None
    out.write_text(
        render_markdown(meta, tasks, records, scores, summary, baseline_document), encoding="utf-8"
    )
    return scores


def describe_model(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {"model": None, "model_name": "?", "model_bytes": None}
    try:
        size: int | None = path.stat().st_size
    except OSError:
        size = None
    return {"model": str(path), "model_name": path.name, "model_bytes": size}


def rescore(path: Path, tasks: Sequence[Task]) -> tuple[dict[str, Any], list[Task], list[RunRecord]]:
    """The tasks and records of an earlier results.json, scored again with the current task file."""
    document = json.loads(path.read_text(encoding="utf-8"))
    by_id = {task.id: task for task in tasks}
    unknown = [entry["id"] for entry in document["tasks"] if entry["id"] not in by_id]
    if unknown:
        raise TaskError(f"{path}: task {unknown[0]!r} is not in the task file any more")
    records = [RunRecord.from_json(entry) for entry in document["tasks"]]
    return dict(document["meta"]), [by_id[record.id] for record in records], records


# -- command line -------------------------------------------------------------------------------


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
    cli.add_argument("--tasks", type=Path, default=DEFAULT_TASKS_FILE, metavar="FILE", help="task file")
    cli.add_argument("--only", action="append", default=[], metavar="ID", help="run this task (repeatable)")
    cli.add_argument(
        "--kind", action="append", default=[], choices=list(KINDS), help="run tasks of this kind"
    )
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.backend == "openai":
        args.out = HERE / "RESULTS-openai.md" if args.out == DEFAULT_OUT else args.out
        args.json = HERE / "results-openai.json" if args.json == DEFAULT_JSON else args.json
        # Side by side with the in-process backend's last run, rather than with the old baseline.
        args.baseline = DEFAULT_JSON if args.baseline == DEFAULT_BASELINE else args.baseline
    try:
        all_tasks = load_tasks(args.tasks)
        check_suite(all_tasks)
        if args.rescore is not None:
            meta, tasks, records = rescore(args.rescore, all_tasks)
        else:
            tasks = select_tasks(all_tasks, args.only, args.kind)
            if not tasks:
                raise TaskError("no task is selected")
    except (TaskError, OSError, ValueError) as error:
        print(f"evals: {error}", file=sys.stderr)
        return 2
    if args.max_steps is not None and not 0 <= args.max_steps <= 100:
        print("evals: --max-steps must be from 0 to 100", file=sys.stderr)
        return 2
    if args.rescore is None:
        settings = Settings(model=args.model, cache_dir=args.cache_dir, max_steps=args.max_steps)
        selection = [f"--only {name}" for name in args.only] + [f"--kind {kind}" for kind in args.kind]
        print(f"evals: {len(tasks)} tasks, one daemon each ({args.backend} backend)", flush=True)
        started = time.perf_counter()
        try:
            with model_server(args, settings) as served:
                records, reported = asyncio.run(run_tasks(tasks, served, args.tools_dir))
        except EvalError as error:
            print(f"evals: {error}", file=sys.stderr)
            return 1
        meta = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            **describe_model(model_file(reported, settings)),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "daemon_version": __version__,
            "tasks_file": _shown(args.tasks),
            "selection": " ".join(selection),
            "max_steps": args.max_steps
            if args.max_steps is not None
            else f"default ({AgentRequest.max_steps})",
            "wall_seconds": time.perf_counter() - started,
            "backend": args.backend,
        }
    baseline = None if str(args.baseline) == "none" or not args.baseline.exists() else args.baseline
    scores = write_outputs(meta, tasks, records, args.out, args.json, baseline)
    report = args.out.read_text(encoding="utf-8")
    print("\n" + report[report.index("## Summary") : report.index("## Tasks")].rstrip() + "\n")
    passed = sum(score.success for score in scores)
    print(f"evals: {passed}/{len(scores)} tasks passed; wrote {_shown(args.out)} and {_shown(args.json)}")
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
