"""A session's workspace: the folder a client opened, granted to the tools whose policy asks for it.

A policy's `workspace = "ro"|"rw"` asks for whichever folder the client opens, so the grant is made
per call, from the tool's mode and the calling session's folder: two sessions with two folders
each have their own folder granted. The folder is pinned when the session opens (its resolved path,
device and inode): a folder swapped for a link or another directory later is not granted (the host
checks before each call, as for every granted directory), and it passes the same checks as any
directory a policy names (`policy.Protected`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llama_agent.common.text import quoted
from llama_agent.runtime.tools.policy import WORKSPACE_GUEST, DirGrant, PolicyError, Protected

WorkspaceMode = Literal["ro", "rw"]


class WorkspaceRefused(ValueError):
    """A workspace that cannot be granted to a tool; the message says why and names both."""


@dataclass(frozen=True)
class Workspace:
    folder: Path  # as the client (or --workspace) named it
    host: Path  # resolved: what is granted
    identity: tuple[int, int] | None  # (device, inode) when the session opened
    problem: str | None = None  # why it cannot be granted at all

    @classmethod
    def at(cls, folder: Path) -> Workspace:
        """`folder`, pinned now; one that is missing or no directory is kept with its problem (its
        calls are refused saying so)."""
        host = Path(os.path.realpath(folder))
        try:
            info = os.stat(host)
        except (OSError, ValueError) as error:  # ValueError: a NUL byte
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            return cls(folder, host, None, f"cannot use it: {reason}")
        if not stat.S_ISDIR(info.st_mode):
            return cls(folder, host, None, "it is not a directory")
        return cls(folder, host, (info.st_dev, info.st_ino))


def workspace_grant(workspace: Workspace, mode: WorkspaceMode, protected: Protected, tool: str) -> DirGrant:
    """The grant of `workspace` to `tool` in `mode`, at /workspace. Raises WorkspaceRefused when the
    folder cannot be used, or is one no policy may be granted (`/`, `$HOME` and above; for writing,
    the tools directories, the compile cache, the config directory, and what is above or inside
    them)."""
    if workspace.problem is not None:
        raise WorkspaceRefused(
            f"the workspace {quoted(str(workspace.folder))} cannot be granted to {tool}: {workspace.problem}"
        )
    grant = DirGrant(workspace.host, WORKSPACE_GUEST, mode, workspace.identity)
    try:
        protected.check(grant, f"the workspace of {tool}")
    except PolicyError as error:
        raise WorkspaceRefused(str(error)) from None
    return grant
