"""The daemons the evaluation talks to: tools prepared for them, started, waited on until the model
and every bundled tool are ready, and `agent/run` results turned into records. Shared by the
tasks' runner (evals/run.py) and the conversations' (evals/dialogues.py)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.scoring import RunRecord, Step
from evals.tasks import BUNDLED_TOOLS
from tests.rpc import DaemonSession, RpcError

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
    # The daemon's program instead of `llama-agent serve`, and more environment variables for it
    # (the tests: the scripted daemon).
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] | None = None


class DaemonExited(RuntimeError):
    pass


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


@contextlib.contextmanager
def fresh_workspace(fixture: Path, workspace: Path) -> Iterator[Path]:
    """A copy of `fixture` at `workspace` for one task or conversation, removed afterwards: writes
    never leak from one into the next."""
    shutil.copytree(fixture, workspace)
    try:
        yield workspace
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


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


@dataclass
class ReadyDaemon:
    session: DaemonSession
    model: str  # the model's path (or name) as the daemon reports it
    startup_seconds: float  # from the start until the model and the tools were ready
    # False after a run failed (timed out, say): the daemon is killed rather than asked to shut down.
    healthy: bool = True


@contextlib.asynccontextmanager
async def ready_daemon(settings: Settings, tools: Path, workspace: Path) -> AsyncIterator[ReadyDaemon]:
    """A daemon on `workspace`, once its model and tools are ready; shut down (or killed) at the end."""
    started = time.perf_counter()
    session = await DaemonSession.open(
        daemon_args(settings, tools, workspace),
        command=settings.command,
        env=dict(settings.env) if settings.env else None,
    )
    try:
        try:
            model: str = await unless_exited(session, wait_ready(session), READY_TIMEOUT)
        except (DaemonExited, TimeoutError) as error:
            raise EvalError(f"the daemon never got ready: {error or 'timed out'}") from error
        daemon = ReadyDaemon(session, model, time.perf_counter() - started)
        yield daemon
        if session.violations:
            print(f"evals: protocol violations: {session.violations[:3]}", file=sys.stderr, flush=True)
        if daemon.healthy and session.process.returncode is None:
            with contextlib.suppress(TimeoutError, RpcError):
                await session.shutdown_and_exit(SHUTDOWN_TIMEOUT)
    finally:
        await session.kill()


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


def run_failure(error: Exception) -> str:
    """What a failed agent/run's record says."""
    if isinstance(error, TimeoutError):
        return f"agent/run timed out after {RUN_TIMEOUT:.0f} s"
    return str(error)


def record_from_result(
    record_id: str, result: dict[str, Any], seconds: float, startup: float, max_steps: int
) -> RunRecord:
    steps = tuple(
        Step(step["tool"], dict(step["arguments"]), bool(step["isError"]), str(step["result"])[:RESULT_CHARS])
        for step in result["steps"]
    )
    usage = result["usage"]
    return RunRecord(
        id=record_id,
        steps=steps,
        answer=str(result["answer"]),
        stop_reason=str(result["stopReason"]),
        prompt_tokens=int(usage["promptTokens"]),
        completion_tokens=int(usage["completionTokens"]),
        seconds=seconds,
        startup_seconds=startup,
        prompt_format=str(result.get("promptFormat", "")),
        max_steps=max_steps,
        cached_prompt_tokens=int(usage.get("cachedPromptTokens") or 0),
    )
