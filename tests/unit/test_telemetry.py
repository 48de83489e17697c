"""What the daemon reports about itself: metrics (a scrape parsed as Prometheus parses it), traces
(the SDK's in-memory exporter, and a real OTLP/HTTP export to a collector on 127.0.0.1), JSON logs
and the audit log, from real sessions, runs and tool calls (a scripted model, real components)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextvars import copy_context
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from llama_agent.cli import logs as cli_logs
from llama_agent.cli import parse_arguments
from llama_agent.cli.options import Command
from llama_agent.config import DaemonConfig, Locations
from llama_agent.core import Core, open_core
from llama_agent.runtime.telemetry import audit, context, metrics, tracing
from llama_agent.runtime.telemetry.calls import observe_call
from llama_agent.runtime.telemetry.metrics import REGISTRY, BoundedNames, observe_request, scrape
from llama_agent.runtime.tools.limits import Limits
from llama_agent.runtime.tools.policy import DirGrant, Grants
from llama_agent.runtime.wasm.host import WasmHost
from llama_agent.runtime.wasm.workers import CancelToken
from llama_agent.services.agent.loop import AgentRequest
from llama_agent.services.consent.calls import Choice, ConsentRequest
from llama_agent.services.sessions import NobodyToAsk
from llama_agent.services.tools.settings import ToolSettings
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from tests.scripted_model import ScriptedModel, answer, call
from tests.unit.test_agent_loop import Recorder
from tests.wat_tools import tool_wasm


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed by Prometheus' own parser."""
    text, content_type = scrape()
    assert content_type.startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    yield exporter
    tracing.use_tracer_provider(None)


@pytest.fixture
def audit_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "audit.jsonl"
    audit.configure_audit_log(path)
    yield path
    audit.configure_audit_log(None)


def attributes_of(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]


@pytest.fixture
def tools(tmp_path: Path, test_tools: Path) -> Path:
    directory = tmp_path / "tools"
    directory.mkdir()
    shutil.copy2(test_tools / "hostile.wasm", directory / "hostile.wasm")
    (directory / "echo.wasm").write_bytes(tool_wasm("echo", description="Returns its value."))
    return directory


def core_for(tools: Path, tmp_path: Path, cache_dir: Path, *turns: str, trusted: bool = True) -> Core:
    """A core with the hostile tool asking for the workspace read-write, and echo."""
    (tools / "hostile.policy.toml").write_text('workspace = "rw"\n')
    where = ToolSettings(trusted_directories=(tools,)) if trusted else ToolSettings(directories=(tools,))
    config = DaemonConfig(tools=where, locations=Locations(cache_dir, config_dir=tmp_path / "config"))
    return open_core(config, watch=False, model_loader=ScriptedModel(list(turns)).loader())


class Person:
    def __init__(self, *answers: Choice) -> None:
        self.answers = list(answers)

    async def ask(self, request: ConsentRequest) -> Choice:
        return self.answers.pop(0)


def as_tenant(tenant: str, session: str) -> None:
    """The test's task works for `tenant`, in `session`, as a network face would set it."""
    context.tenant.set(tenant)
    context.session_id.set(session)


# -- metrics --------------------------------------------------------------------------------------


def test_requests_are_counted_by_known_method_tenant_and_outcome() -> None:
    before = scraped()
    observe_request("tools/invoke", "acme", "ok", 0.004)
    observe_request("tools/invoke", "acme", "ok", 0.2)
    observe_request("x" * 500 + "\n{evil}", "acme", "ok", 0.01)  # a method nobody knows
    observe_request("agent/run", "", "totally-new", 1.0)  # "": the local user
    observe_request("agent/run", 'tenant"} 1\n', "error", 1.0)  # not a name
    after = scraped()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    total = "llama_agent_requests_total"
    assert delta(total, method="tools/invoke", tenant="acme", outcome="ok") == 2
    assert delta(total, method="other", tenant="acme", outcome="ok") == 1
    assert delta(total, method="agent/run", tenant="local", outcome="other") == 1
    assert delta(total, method="agent/run", tenant="other", outcome="error") == 1
    seconds = "llama_agent_request_seconds"
    assert delta(f"{seconds}_count", method="tools/invoke", tenant="acme") == 2
    assert delta(f"{seconds}_bucket", method="tools/invoke", tenant="acme", le="0.005") == 1
    assert not [key for key in after if "evil" in str(key)]


def test_only_so_many_names_become_labels() -> None:
    names = BoundedNames(limit=2)
    assert [names(n) for n in ("a", "b", "c", "a", "b", "d")] == ["a", "b", "other", "a", "b", "other"]
    assert names("with space") == names("") == names("x" * 65) == "other"


def test_the_gauges_say_what_the_scheduler_and_faces_set() -> None:
    metrics.set_model_queue_depth(3)
    assert sample("llama_agent_model_queue_depth") == 3
    open_before = sample("llama_agent_active_sessions", tenant="acme")
    metrics.session_opened("acme")
    metrics.session_opened("acme")
    metrics.session_closed("acme")
    assert sample("llama_agent_active_sessions", tenant="acme") == open_before + 1
    metrics.session_closed("acme")
    metrics.set_model_queue_depth(0)


# -- a run traced and counted -----------------------------------------------------------------------


async def test_a_run_its_turns_and_its_call_are_spans_with_their_figures(
    tmp_path: Path, tools: Path, cache_dir: Path, spans: InMemorySpanExporter, audit_log: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write = call("hostile", action="write", target="/workspace/new.txt")
    turns_before = sample("llama_agent_agent_turns_total", tenant="acme")
    runs_before = sample("llama_agent_agent_runs_total", tenant="acme", outcome="answer")
    calls_before = sample("llama_agent_tool_calls_total", tool="hostile", tenant="acme", outcome="ok")
    tokens_before = sample("llama_agent_tokens_total", tenant="acme", kind="completion")
    with core_for(tools, tmp_path, cache_dir, write, answer("written")) as core:
        as_tenant("acme", "s-1")
        session = core.open_session(workspace=project, asker=Person(), allow_writes=True)
        result = await session.run(AgentRequest("write it", max_steps=2), Recorder())
    assert result.answer == "written" and (project / "new.txt").exists()

    by_name: dict[str, list[ReadableSpan]] = {}
    for span in spans.get_finished_spans():
        by_name.setdefault(span.name, []).append(span)
    [run], turns, [tool_call] = by_name["agent.run"], by_name["agent.turn"], by_name["tool.call"]
    assert run.parent is None and run.attributes is not None
    assert {key: run.attributes[key] for key in ("tenant", "session", "steps", "stop_reason")} == {
        "tenant": "acme",
        "session": "s-1",
        "steps": 1,
        "stop_reason": "answer",
    }
    assert run.attributes["prompt_tokens"] == result.prompt_tokens > 0
    assert run.attributes["completion_tokens"] == result.completion_tokens > 0
    assert [turn.attributes["index"] for turn in turns if turn.attributes] == [0, 1]
    assert all(turn.parent is not None and turn.parent.span_id == run.context.span_id for turn in turns)
    assert sum(attributes_of(turn)["completion_tokens"] for turn in turns) == result.completion_tokens
    # The call is the first turn's: the model asked for it there.
    assert tool_call.parent is not None and tool_call.parent.span_id == turns[0].context.span_id
    attributes = attributes_of(tool_call)
    assert attributes["tool.name"] == "hostile" and attributes["tool.outcome"] == "ok"
    assert attributes["tenant"] == "acme" and attributes["session"] == "s-1"
    assert 0 < float(attributes["sandbox.duration_ms"]) < 10_000
    # Measured in the worker: what the call wrote to its granted files, and the worker's peak.
    written = len("written by a tool")
    assert written <= int(attributes["sandbox.bytes_written"]) < written + 4096
    assert int(attributes["sandbox.peak_memory_bytes"]) > 10 * 2**20

    assert sample("llama_agent_agent_turns_total", tenant="acme") == turns_before + 2
    assert sample("llama_agent_agent_runs_total", tenant="acme", outcome="answer") == runs_before + 1
    assert (
        sample("llama_agent_tool_calls_total", tool="hostile", tenant="acme", outcome="ok")
        == calls_before + 1
    )
    assert sample("llama_agent_tokens_total", tenant="acme", kind="completion") == (
        tokens_before + result.completion_tokens
    )
    assert sample("llama_agent_active_runs", tenant="acme") == 0

    [made] = records(audit_log)
    assert {key: made[key] for key in ("event", "tool", "tenant", "session_id", "outcome")} == {
        "event": "call",
        "tool": "hostile",
        "tenant": "acme",
        "session_id": "s-1",
        "outcome": "ok",
    }
    assert made["writable"] == [str(project)]
    assert made["bytes_written"] == attributes["sandbox.bytes_written"]


async def test_a_cancelled_run_ends_its_spans_and_counts_as_cancelled(
    tmp_path: Path, tools: Path, cache_dir: Path, spans: InMemorySpanExporter
) -> None:
    model = ScriptedModel([answer("x" * 400)], piece_delay=0.05)
    config = DaemonConfig(
        tools=ToolSettings(trusted_directories=(tools,)),
        locations=Locations(cache_dir, config_dir=tmp_path / "config"),
    )
    with open_core(config, watch=False, model_loader=model.loader()) as core:
        as_tenant("acme", "s-2")
        cancelled_before = sample("llama_agent_agent_runs_total", tenant="acme", outcome="cancelled")
        session = core.open_session(workspace=None, asker=Person())
        run = asyncio.ensure_future(session.run(AgentRequest("talk", max_tokens=200), Recorder()))
        await asyncio.sleep(0.5)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    [span] = [s for s in spans.get_finished_spans() if s.name == "agent.run"]
    assert span.attributes is not None and span.attributes["stop_reason"] == "cancelled"
    assert {s.name for s in spans.get_finished_spans()} == {"agent.run", "agent.turn"}  # all ended
    assert sample("llama_agent_agent_runs_total", tenant="acme", outcome="cancelled") == cancelled_before + 1
    assert sample("llama_agent_active_runs", tenant="acme") == 0


@dataclass(frozen=True)
class Measured:
    """A call's result with every figure the host reports."""

    is_error: bool = False
    timed_out: bool = False
    duration_ms: float = 12.5
    peak_memory_bytes: int = 3 * 1024 * 1024
    bytes_written: int = 42
    confinement: str = "landlock+seccomp"


def test_a_calls_sandbox_figures_become_attributes_and_audit_fields(
    tmp_path: Path, spans: InMemorySpanExporter, audit_log: Path
) -> None:
    granted = [DirGrant(tmp_path, "/workspace", "rw"), DirGrant(Path("/usr"), "/usr", "ro")]

    def call() -> None:
        as_tenant("gamma", "s-5")
        with observe_call("measured", granted) as observed:
            observed.done(Measured())

    copy_context().run(call)
    [span] = spans.get_finished_spans()
    figures = {key: value for key, value in attributes_of(span).items() if key.startswith("sandbox.")}
    assert figures == {
        "sandbox.duration_ms": 12.5,
        "sandbox.peak_memory_bytes": 3 * 1024 * 1024,
        "sandbox.bytes_written": 42,
        "sandbox.confinement": "landlock+seccomp",
    }
    [record] = records(audit_log)
    assert record["writable"] == [str(tmp_path)] and record["bytes_written"] == 42


# -- refusals, approvals and the audit log ----------------------------------------------------------


async def test_refused_calls_are_counted_traced_and_the_answers_audited(
    tmp_path: Path, tools: Path, cache_dir: Path, spans: InMemorySpanExporter, audit_log: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    refusals_before = sample("llama_agent_sandbox_refusals_total", tenant="beta", kind="consent")
    grant_before = sample("llama_agent_sandbox_refusals_total", tenant="beta", kind="grant")
    with core_for(tools, tmp_path, cache_dir) as core:
        as_tenant("beta", "s-3")
        arguments = {"action": "write", "target": "/workspace/new.txt"}
        person = core.open_session(workspace=project, asker=Person(Choice.REJECT, Choice.ALLOW_ONCE))
        assert (await person.invoke("hostile", arguments)).invocation.is_error
        assert not (await person.invoke("hostile", arguments)).invocation.is_error
        nobody = core.open_session(workspace=project, asker=NobodyToAsk("start it with --allow-writes"))
        assert (await nobody.invoke("hostile", arguments)).invocation.is_error
        nowhere = core.open_session(workspace=tmp_path / "missing", asker=Person())
        assert (await nowhere.invoke("hostile", arguments)).invocation.is_error
    assert sample("llama_agent_sandbox_refusals_total", tenant="beta", kind="consent") == refusals_before + 2
    assert sample("llama_agent_sandbox_refusals_total", tenant="beta", kind="grant") == grant_before + 1
    outcomes = [dict(s.attributes or {}).get("tool.outcome") for s in spans.get_finished_spans()]
    assert outcomes == ["refused", "ok", "refused", "refused"]
    said = [
        (r["event"], r.get("choice"), r.get("outcome"), r["tenant"], r["session_id"])
        for r in records(audit_log)
    ]
    assert said == [
        ("consent", "reject", None, "beta", "s-3"),
        ("consent", "allow-once", None, "beta", "s-3"),
        ("call", None, "ok", "beta", "s-3"),
    ]


async def test_an_answer_to_a_tools_grant_request_is_audited(
    tmp_path: Path, tools: Path, cache_dir: Path, audit_log: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    with core_for(tools, tmp_path, cache_dir, trusted=False) as core:
        session = core.open_session(workspace=project, asker=Person())
        [request] = session.grant_requests_to_ask()
        await session.answer_grant_request(request, "Deny")
    [record] = records(audit_log)
    assert record["event"] == "grant" and record["tool"] == "hostile" and record["choice"] == "Deny"
    assert record["tenant"] == "local" and "session_id" not in record
    assert record["dirs"] == [f"{project} (rw)"] and record["file"].endswith("hostile.wasm")


def test_an_audit_line_is_whole_bounded_and_cannot_be_forged(tmp_path: Path, audit_log: Path) -> None:
    audit.record("call", tool="echo", writable=["/a" * 20_000], note='x"\n{"event": "forged"}')

    def many(index: int) -> None:
        for _ in range(200):
            audit.record("consent", tool=f"t{index}", choice="allow-once", padding="p" * 3000)

    threads = [threading.Thread(target=many, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = audit_log.read_bytes().splitlines()
    assert len(lines) == 801 and all(len(line) < audit.MAX_LINE_BYTES for line in lines)
    first = json.loads(lines[0])
    assert first["truncated"] is True and first["event"] == "call" and first["note"].startswith('x"\n')
    assert sum(json.loads(line)["event"] == "consent" for line in lines) == 800
    assert audit_log.stat().st_mode & 0o777 == 0o600


# -- workers replaced --------------------------------------------------------------------------------


def test_a_worker_killed_at_its_deadline_on_cancel_or_from_outside_is_a_restart(
    tmp_path: Path,
) -> None:
    host = WasmHost(tmp_path / "cache", Limits(timeout_seconds=0.3), max_parallel_calls=1)
    try:
        nap = host.load_bytes(tool_wasm("nap", behaviour="sleep"), Path("nap.wasm"))
        deadline = sample("llama_agent_worker_restarts_total", reason="deadline")
        assert host.invoke(nap, {"value": "x"}).timed_out
        assert sample("llama_agent_worker_restarts_total", reason="deadline") == deadline + 1
        cancels = sample("llama_agent_worker_restarts_total", reason="cancel")
        cancel = CancelToken()
        threading.Timer(0.1, cancel.cancel).start()
        limits = Grants(limits=Limits(timeout_seconds=5))
        assert host.invoke(nap, {"value": "x"}, limits, cancel=cancel).text == "cancelled"
        assert sample("llama_agent_worker_restarts_total", reason="cancel") == cancels + 1
        crashes = sample("llama_agent_worker_restarts_total", reason="crash")
        threading.Timer(0.3, lambda: os.kill(host.workers.busy_pids()[0], signal.SIGKILL)).start()
        assert "ended by signal 9" in host.invoke(nap, {"value": "x"}, limits).text
        assert sample("llama_agent_worker_restarts_total", reason="crash") == crashes + 1
    finally:
        host.close()


# -- traces exported over OTLP -----------------------------------------------------------------------


RECEIVED: list[tuple[str, str, bytes]] = []  # what the collector below was sent


class Collector(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        RECEIVED.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_without_an_endpoint_nothing_is_traced_and_a_span_costs_nothing() -> None:
    assert tracing.configure_tracing(environ={}) is False
    assert tracing.tracer() is None
    assert tracing.span("a") is tracing.span("b")  # one shared do-nothing context


def test_with_an_endpoint_spans_go_to_the_collector_over_otlp_http(monkeypatch: pytest.MonkeyPatch) -> None:
    server = HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    RECEIVED.clear()
    try:
        assert tracing.configure_tracing("llama-agent-test")
        with tracing.span("agent.run", {"tenant": "acme"}):
            pass
        tracing.flush_traces()
    finally:
        tracing.use_tracer_provider(None)
        server.shutdown()
    [(path, content_type, body)] = RECEIVED
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    exported = ExportTraceServiceRequest.FromString(body)
    [resource] = exported.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
    assert service == "llama-agent-test"
    assert [s.name for scope in resource.scope_spans for s in scope.spans] == ["agent.run"]


# -- JSON logs and the command line -----------------------------------------------------------------


def test_json_logs_are_one_object_a_line_with_the_contexts_ids(tmp_path: Path) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    log_file = tmp_path / "daemon.log"
    try:
        cli_logs.configure_logging(0, log_file, "json")
        log = logging.getLogger("llama_agent.test")

        def in_a_request() -> None:
            as_tenant("acme", "s-9")
            context.request_id.set("42")
            log.info("a call:\n%s", "two lines")

        copy_context().run(in_a_request)
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("it failed")
        assert cli_logs._listener is not None
        cli_logs._listener.stop()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        cli_logs._listener = None
    first, second = (json.loads(line) for line in log_file.read_text().splitlines())
    assert first["message"] == "a call:\ntwo lines" and first["level"] == "INFO"
    assert first["logger"] == "llama_agent.test" and first["time"].endswith("+00:00")
    assert (first["tenant"], first["session_id"], first["request_id"]) == ("acme", "s-9", "42")
    assert second["level"] == "ERROR" and "ValueError: boom" in second["message"]
    assert "tenant" not in second  # outside the request: no ids


def test_the_long_running_commands_take_the_log_format_and_the_audit_log(tmp_path: Path) -> None:
    args = parse_arguments(["mcp", "--log-format", "json", "--audit-log", str(tmp_path / "a.jsonl")])
    command: Command = args.subcommand
    settings = command.logging.settings(args)
    assert (settings.format, settings.audit_log) == ("json", tmp_path / "a.jsonl")
    plain = parse_arguments(["serve"])
    assert plain.subcommand.logging.settings(plain).format == "text"
    with pytest.raises(SystemExit):
        parse_arguments(["tools", "list", "--log-format", "json"])
    with pytest.raises(SystemExit):
        parse_arguments(["acp", "--log-format", "xml"])
