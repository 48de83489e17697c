"""The tools section of the daemon's settings, owned by the tool registry: where tools are found,
which of those directories the person trusts, and how long one call may run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llama_agent.common.paths import REPO_ROOT

# `make components` builds the bundled tools here; they are always trusted.
BUNDLED_TOOLS_DIR = REPO_ROOT / "build" / "tools"
DEFAULT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class ToolSettings:
    # Watched for `*.wasm` tools; their policies only ask (see `llama-agent tools grant`).
    directories: tuple[Path, ...] = ()
    # Watched like `directories`, and their tools' policies apply without asking: the person named
    # them on the command line.
    trusted_directories: tuple[Path, ...] = ()
    # The wall-clock limit of one call (the host's default limits).
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    def watched_dirs(self) -> tuple[Path, ...]:
        """Every tools directory, in discovery order: `directories`, then `trusted_directories`."""
        return tuple(dict.fromkeys((*self.directories, *self.trusted_directories)))
