"""Daemon settings as a typed dataclass, and where things live by default."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from llama_agent.runtime.models.backend import ModelSettings, RemoteSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
# `make components` builds the bundled tools here.
BUNDLED_TOOLS_DIR = REPO_ROOT / "build" / "tools"


def _user_dir(explicit_variable: str, xdg_variable: str, xdg_fallback: str) -> Path:
    """`$explicit_variable`, else `$xdg_variable/llama-agent`, else `~/xdg_fallback/llama-agent`."""
    explicit = os.environ.get(explicit_variable)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get(xdg_variable)
    return (Path(xdg) if xdg else Path.home() / xdg_fallback) / "llama-agent"


def default_cache_dir() -> Path:
    return _user_dir("LLAMA_AGENT_CACHE_DIR", "XDG_CACHE_HOME", ".cache")


def default_config_dir() -> Path:
    """Where the person's own settings live (grants.toml): outside every tools directory, never
    granted for writing."""
    return _user_dir("LLAMA_AGENT_CONFIG_DIR", "XDG_CONFIG_HOME", ".config")


@dataclass(frozen=True)
class DaemonConfig:
    tools_dirs: tuple[Path, ...] = (BUNDLED_TOOLS_DIR,)
    cache_dir: Path = field(default_factory=default_cache_dir)
    model_path: Path | None = None
    # A Hugging Face reference (REPO:FILE.gguf) instead of model_path: downloaded once into the cache.
    hub_model: str | None = None
    # Set: the model is behind this OpenAI-compatible server (the openai backend), not in-process.
    remote: RemoteSettings | None = None
    log_file: Path | None = None
    verbosity: int = 0
    tool_timeout_seconds: float = 10.0
    context_size: int = 4096
    threads: int | None = None
    seed: int = 0
    eager_model_load: bool = True
    # Granted to tools whose policy says `workspace = ...`; the daemon takes the client's
    # folder from `initialize` unless this is set.
    workspace: Path | None = None
    # Watched like tools_dirs, and their tools' policies apply without asking: the person named
    # them on the command line. The bundled directory is always trusted.
    trusted_tools_dirs: tuple[Path, ...] = ()
    # grants.toml: the tools' requests the person approved.
    config_dir: Path = field(default_factory=default_config_dir)

    def watched_dirs(self) -> tuple[Path, ...]:
        """Every tools directory, in discovery order: `tools_dirs`, then `trusted_tools_dirs`."""
        return tuple(dict.fromkeys((*self.tools_dirs, *self.trusted_tools_dirs)))

    def trusted_dirs(self) -> tuple[Path, ...]:
        return (BUNDLED_TOOLS_DIR, *self.trusted_tools_dirs)

    def model_settings(self) -> ModelSettings:
        return ModelSettings(
            path=self.model_path,
            context_size=self.context_size,
            threads=self.threads,
            seed=self.seed,
            hub_reference=self.hub_model,
            remote=self.remote,
        )
