"""Where things live by default: the source tree, and the person's cache and config directories
(`$LLAMA_AGENT_CACHE_DIR`, `$XDG_CACHE_HOME`, ...)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# The repository (the folder above daemon/, the source root of the llama_agent package).
REPO_ROOT = Path(__file__).resolve().parents[3]


def _user_dir(explicit_variable: str, xdg_variable: str, xdg_fallback: str) -> Path:
    """`$explicit_variable`, else `$xdg_variable/llama-agent`, else `~/xdg_fallback/llama-agent`.

    A relative `$xdg_variable` is ignored, with a warning, as the XDG Base Directory
    specification says: it would name a different directory from every working directory."""
    explicit = os.environ.get(explicit_variable)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get(xdg_variable)
    if xdg and not Path(xdg).is_absolute():
        log.warning("ignoring $%s=%r: it must be an absolute path", xdg_variable, xdg)
        xdg = None
    return (Path(xdg) if xdg else Path.home() / xdg_fallback) / "llama-agent"


def default_cache_dir() -> Path:
    return _user_dir("LLAMA_AGENT_CACHE_DIR", "XDG_CACHE_HOME", ".cache")


def default_config_dir() -> Path:
    """Where the person's own settings live (grants.toml): outside every tools directory, never
    granted for writing."""
    return _user_dir("LLAMA_AGENT_CONFIG_DIR", "XDG_CONFIG_HOME", ".config")
