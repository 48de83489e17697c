"""The daemon's settings, one typed section per part that reads it, and where things live by default.

Each section belongs to what uses it (the tool registry owns `ToolSettings`, the model backends
own `ModelSettings`); `DaemonConfig` only groups them, and the composition root (core.py) hands
each service its own section, never the whole config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from llama_agent.common.paths import REPO_ROOT as REPO_ROOT
from llama_agent.common.paths import default_cache_dir as default_cache_dir
from llama_agent.common.paths import default_config_dir as default_config_dir
from llama_agent.runtime.models.backend import ModelSettings
from llama_agent.services.tools.settings import BUNDLED_TOOLS_DIR as BUNDLED_TOOLS_DIR
from llama_agent.services.tools.settings import ToolSettings

log = logging.getLogger(__name__)


def bundled_tool_settings() -> ToolSettings:
    """The tools built with the daemon, unless some tools directory is named."""
    return ToolSettings(directories=(BUNDLED_TOOLS_DIR,))


@dataclass(frozen=True)
class Locations:
    """The daemon's own directories."""

    # Compiled components, downloaded and embedded models, evaluated prompt starts.
    cache_dir: Path = field(default_factory=default_cache_dir)
    # The compile cache was filled and sealed beforehand and is only read (`--cache-read-only`:
    # a replica's shared cache); what it lacks is compiled into a private cache of the process.
    cache_read_only: bool = False
    # grants.toml: the tools' requests the person approved.
    config_dir: Path = field(default_factory=default_config_dir)


@dataclass(frozen=True)
class SessionSettings:
    """What a client's session starts with."""

    # Granted to tools whose policy says `workspace = ...`; the LSP face takes the client's
    # folder from `initialize` unless this is set.
    workspace: Path | None = None
    # Load the model as soon as an LSP client is ready, not on its first agent/run.
    eager_model_load: bool = True
    # Calls that may write run without asking the person (`--allow-writes`): approved up front.
    allow_writes: bool = False


@dataclass(frozen=True)
class LoggingSettings:
    file: Path | None = None  # None: stderr
    # -1: warnings only (one-shot commands), 0: info, 1: debug, 2: debug with protocol bodies.
    verbosity: int = 0
    format: Literal["text", "json"] = "text"  # json: one object per line (runtime/telemetry/logs.py)
    audit_log: Path | None = None  # approvals and writable calls, appended (runtime/telemetry/audit.py)


@dataclass(frozen=True)
class DaemonConfig:
    tools: ToolSettings = field(default_factory=bundled_tool_settings)
    model: ModelSettings = field(default_factory=ModelSettings)
    session: SessionSettings = field(default_factory=SessionSettings)
    locations: Locations = field(default_factory=Locations)
    logging: LoggingSettings = field(default_factory=LoggingSettings)

    def trusted_dirs(self) -> tuple[Path, ...]:
        """The tools directories whose policies apply without asking: the bundled one, always,
        and those the person named trusted."""
        return (BUNDLED_TOOLS_DIR, *self.tools.trusted_directories)
