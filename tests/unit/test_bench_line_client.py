"""The invoke benchmark's minimal client (bench/line_client.py) on in-memory streams, and the parts
of its report that compare the servers and account for memory, on made-up figures: the benchmark
itself is `make bench`'s, never the tests'."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from bench.line_client import LineClient, RemoteError, encode, read_message
from bench.report import _fair_goal, _memory_parts_section
from bench.system import Mapping, llama_buffers, resident_parts


def _answers(framing: str, *messages: dict[str, Any]) -> io.BytesIO:
    return io.BytesIO(b"".join(encode(message, framing) for message in messages))  # type: ignore[arg-type]


@pytest.mark.parametrize("framing", ["lines", "content-length"])
def test_a_request_gets_its_answer_past_notifications_and_server_requests(framing: Any) -> None:
    reader = _answers(
        framing,
        {"jsonrpc": "2.0", "method": "$/progress", "params": {}},
        {"jsonrpc": "2.0", "id": "s1", "method": "workspace/configuration", "params": {}},
        {"jsonrpc": "2.0", "id": 1, "result": {"echo": "hi"}},
    )
    writer = io.BytesIO()
    assert LineClient(reader, writer, framing).request("tools/call", {"value": "hi"}) == {"echo": "hi"}
    written = io.BytesIO(writer.getvalue())
    sent = read_message(written, framing)
    assert sent == {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"value": "hi"}}
    assert read_message(written, framing) == {"jsonrpc": "2.0", "id": "s1", "result": None}


def test_the_two_framings_differ_only_in_the_frame() -> None:
    message = {"jsonrpc": "2.0", "id": 7, "method": "tools/invoke"}
    body = json.dumps(message, separators=(",", ":")).encode()
    assert encode(message, "lines") == body + b"\n"
    assert encode(message, "content-length") == b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_an_error_answer_raises_and_a_closed_or_wrong_stream_does_not_hang() -> None:
    failing = _answers("lines", {"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "no"}})
    with pytest.raises(RemoteError, match="-32601"):
        LineClient(failing, io.BytesIO(), "lines").request("nothing")
    with pytest.raises(EOFError):
        LineClient(io.BytesIO(b""), io.BytesIO(), "content-length").request("tools/list")
    with pytest.raises(EOFError):
        read_message(io.BytesIO(b"Content-Length: 10\r\n\r\n{}"), "content-length")
    with pytest.raises(ValueError, match="Content-Length"):
        read_message(io.BytesIO(b"Content-Length: 99999999999\r\n\r\n"), "content-length")
    other = _answers("lines", {"jsonrpc": "2.0", "id": 2, "result": None})
    with pytest.raises(ValueError, match="request 2"):
        LineClient(other, io.BytesIO(), "lines").request("tools/list")


def _stats(p50: float) -> dict[str, float]:
    return {"n": 1000, "p50": p50, "p90": p50, "p99": p50, "min": p50, "max": p50, "mean": p50}


def test_the_goal_compares_both_servers_through_the_line_client_and_gives_the_sdk_figure_apart() -> None:
    invoke: dict[str, Any] = {
        "daemon": _stats(3.0),
        "mcp_peer": _stats(6.0),  # through the SDK's client
        "line_client": {"daemon": _stats(3.6), "mcp_peer": _stats(3.4)},
    }
    goal, sdk = _fair_goal(invoke)
    assert "**missed**" in goal and "1.06" in goal
    assert "6.00 ms" in sdk and "2.00x" in sdk and "Goal" not in sdk
    invoke["line_client"]["daemon"] = _stats(3.4)
    assert "met (daemon / peer p50 = 1.00" in _fair_goal(invoke)[0]


def test_resident_memory_is_split_by_mapping() -> None:
    mib = 1024 * 1024
    arena = 64 * mib * 3  # 64 MiB-aligned
    mappings = [
        Mapping(0x1000, 0x1000 + 240 * mib, "/cache/models/gemma.gguf", 235 * 1024),
        Mapping(0x2000, 0x2000 + 600 * mib, "", 70 * 1024),
        Mapping(arena, arena + 60 * mib, "", 40 * 1024),
        Mapping(0x3000, 0x3000 + mib, "", 1024),
        Mapping(0x4000, 0x4000 + 40 * mib, "[heap]", 20 * 1024),
        Mapping(0x5000, 0x5000 + 9 * mib, "/usr/lib/libllama.so", 5 * 1024),
    ]
    parts = resident_parts(mappings)
    assert parts == {
        "weights": 235,
        "llama_buffers": 70,
        "heap": 20,
        "arenas": 40,
        "anonymous": 1,
        "files": 5,
        "total": 371,
    }
    log = "\n".join(
        [
            "llama_context:        CPU  output buffer size =     1.00 MiB",
            "llama_kv_cache: size =   12.00 MiB (  4096 cells,   3 layers,  1/1 seqs), K (f16):    6.00 MiB",
            "llama_kv_cache: size =   60.00 MiB (  4096 cells,  15 layers,  1/1 seqs), K (f16):   30.00 MiB",
            "sched_reserve:        CPU compute buffer size =   514.50 MiB",
            "llama_context:        CPU  output buffer size =     4.00 MiB",
            "llama_kv_cache: size =   48.00 MiB (  4096 cells,   3 layers,  4/4 seqs), K (q8_0):   24.00 MiB",
        ]
    )
    generation, batched = llama_buffers(log)["contexts"]
    assert generation == {
        "output": 1,
        "kv": 72,
        "compute": 514.5,
        "cells": 4096,
        "sequences": 1,
        "shared": True,
        "type": "f16",
    }
    assert (
        batched["kv"] == 48
        and batched["sequences"] == 4
        and not batched["shared"]
        and batched["type"] == "q8_0"
    )
    resident = {**parts, "rss": 371.0}
    section = _memory_parts_section(
        {
            "default": {"resident": resident, "allocated": llama_buffers(log)},
            "arena_max_2": {"resident": resident, "allocated": llama_buffers(log)},
        }
    )
    assert any(line.startswith("| model weights") and "235 MiB" in line for line in section)
    assert "| 4 sequences of 4,096 cells each | 48 MiB (q8_0) | 4 MiB | 0 MiB |" in section
    assert any("Goal ≤ 500 MiB" in line and "met (371 MiB)" in line for line in section)
