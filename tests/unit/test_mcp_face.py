"""How the MCP face describes a tool: its schema, and hints from what it is granted."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from daemon.protocol.mcp_server import mcp_tool
from daemon.runtime.policy import DirGrant, Grants
from tests.unit.test_prompting import ECHO


def test_a_tool_that_can_write_nowhere_is_read_only_and_never_open_world() -> None:
    listed = mcp_tool(ECHO)
    assert (listed.name, listed.description, listed.inputSchema) == ("echo", "Echoes.", ECHO.input_schema)
    assert listed.annotations is not None
    assert (listed.annotations.readOnlyHint, listed.annotations.destructiveHint) == (True, False)
    assert listed.annotations.openWorldHint is False
    reads = dataclasses.replace(ECHO, grants=Grants(dirs=(DirGrant(Path("/w"), "/workspace", "ro"),)))
    assert mcp_tool(reads).annotations.readOnlyHint is True  # type: ignore[union-attr]


def test_a_tool_granted_a_writable_directory_is_not_read_only() -> None:
    writer = dataclasses.replace(ECHO, grants=Grants(dirs=(DirGrant(Path("/w"), "/workspace", "rw"),)))
    hints = mcp_tool(writer).annotations
    assert hints is not None
    assert (hints.readOnlyHint, hints.destructiveHint, hints.idempotentHint) == (False, True, False)
