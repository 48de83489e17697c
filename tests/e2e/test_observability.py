"""The command line's observability flags on a real daemon: `llama-agent mcp` with JSON logs, an
audit log and OTLP traces sent to a collector on 127.0.0.1, driven by the MCP SDK's client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.clients import OpenMcpClient


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace collector that keeps what it is sent (`server.received`)."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), Collector)
    server.received = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def spans_sent(server: HTTPServer) -> dict[str, dict[str, Any]]:
    """The spans the collector received, by name: their attributes."""
    found: dict[str, dict[str, Any]] = {}
    for path, body in server.received:  # type: ignore[attr-defined]
        assert path == "/v1/traces"
        for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    found[span.name] = {a.key: a.value for a in span.attributes}
    return found


async def test_a_writing_call_is_logged_as_json_audited_and_traced(
    mcp_client: OpenMcpClient, writer: Path, tmp_path: Path, collector: HTTPServer
) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    log, audit = tmp_path / "daemon.log", tmp_path / "audit.jsonl"
    endpoint = f"http://127.0.0.1:{collector.server_port}"
    flags = ("--log-format", "json", "--log-file", log, "--audit-log", audit)
    writing = ("--trusted-tools-dir", writer, "--workspace", workspace, "--allow-writes")
    async with mcp_client(*writing, *flags, env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}) as client:
        outcome = await client.invoke("write_file", {"path": "a.txt", "content": "hello"})
        assert not outcome.is_error, outcome.texts
    assert (workspace / "a.txt").read_text() == "hello"

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    [record] = [json.loads(line) for line in audit.read_text().splitlines()]
    assert (record["event"], record["tool"], record["tenant"], record["outcome"]) == (
        "call",
        "write_file",
        "local",
        "ok",
    )
    assert record["writable"] == [str(workspace)]

    call = spans_sent(collector)["tool.call"]  # exported as the daemon ended
    assert call["tool.name"].string_value == "write_file" and call["tool.outcome"].string_value == "ok"
    assert call["sandbox.duration_ms"].double_value > 0
