"""Helpers shared by the benchmarks: statistics, unique components, daemon sessions."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from llama_agent.config import BUNDLED_TOOLS_DIR, REPO_ROOT

BENCH_CACHE_DIR = REPO_ROOT / "build" / "bench-cache"


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50": percentile(samples, 0.50),
        "p90": percentile(samples, 0.90),
        "p99": percentile(samples, 0.99),
        "min": min(samples),
        "max": max(samples),
        "mean": statistics.fmean(samples),
    }


def with_custom_section(wasm: bytes, nonce: str) -> bytes:
    """The same component with a custom section appended: same behaviour, new content hash."""
    name = b"bench-nonce"
    payload = bytes([len(name)]) + name + nonce.encode()
    return wasm + b"\x00" + _leb128(len(payload)) + payload


def _leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def bundled(name: str) -> Path:
    return BUNDLED_TOOLS_DIR / f"{name}.wasm"
