"""calc, the bundled JavaScript tool, over stdio."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.rpc import DaemonSession, StartDaemon


@pytest.fixture
async def daemon(start_daemon: StartDaemon, bundled_tools: Path, tmp_path: Path) -> DaemonSession:
    shutil.copy2(bundled_tools / "calc.wasm", tmp_path / "calc.wasm")
    session = await start_daemon("--tools-dir", tmp_path)
    return session


async def calc(daemon: DaemonSession, expression: str) -> tuple[bool, str]:
    result = await daemon.request("tools/invoke", {"name": "calc", "arguments": {"expression": expression}})
    return result["isError"], result["content"][0]["text"]


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", "7"),
        ("(2 + 3) * 4 ^ 2", "80"),
        ("2 ^ 3 ^ 2", "512"),
        ("-2 ** 2", "-4"),
        ("10 / 4", "2.5"),
        ("7 % 3", "1"),
        ("15% of 240", "36"),
        ("8% of 350", "28"),  # 28.000000000000004 in floating point
        ("15 % OF (200 + 40)", "36"),
        ("240 * 15%", "36"),
        ("50%", "0.5"),
        ("(10%) + 1", "1.1"),
        ("2 ^ 3 % 5", "3"),
        ("sqrt(2)", "1.4142135623731"),
        ("max(1, 5, 3) + min(4, 2)", "7"),
        ("2 * pi", "6.28318530717959"),
        ("0.1 + 0.2", "0.3"),
        ("1.5e3", "1500"),
    ],
)
async def test_expressions_evaluate(daemon: DaemonSession, expression: str, value: str) -> None:
    assert await calc(daemon, expression) == (False, value)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "division by zero at position 3"),
        ("2 +", "unexpected end of expression at position 4"),
        ("(1 + 2", "expected ')'"),
        ("2 3", "unexpected '3' at position 3: expected an operator"),
        ("3 $ 4", "unexpected character '$' at position 3"),
        ("foo(1)", "unknown function 'foo'"),
        ("x + 1", "unknown name 'x'"),
        ("15% of", "unexpected end of expression"),
        ("of 3", "unknown name 'of'"),
        ("sqrt(1, 2)", "sqrt takes 1 argument, got 2"),
        ("", "the expression is empty"),
        ("10 ^ 400", "too large"),
        ("__import__('os')", "unexpected character"),
    ],
)
async def test_bad_expressions_are_clear_errors(daemon: DaemonSession, expression: str, message: str) -> None:
    is_error, text = await calc(daemon, expression)
    assert is_error
    assert message in text
