"""The set of loaded tools, and validated, off-the-event-loop invocation of them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.config import DaemonConfig
from daemon.runtime.sandbox import Limits
from daemon.runtime.schema import ArgumentError, coerce_arguments, input_schema, validate_arguments
from daemon.runtime.wasm_host import Invocation, LoadedTool, ToolLoadError, WasmHost

log = logging.getLogger(__name__)

TOOL_SUFFIX = ".wasm"


class UnknownTool(LookupError):
    def __init__(self, name: str, available: Iterable[str]) -> None:
        known = ", ".join(sorted(available)) or "none are loaded"
        super().__init__(f"unknown tool {name!r} (available: {known})")
        self.name = name


@dataclass(frozen=True)
class LoadFailure:
    path: Path
    error: str


@dataclass(frozen=True)
class Tool:
    """A loaded tool as the rest of the daemon sees it."""

    loaded: LoadedTool
    input_schema: dict[str, Any]

    @property
    def name(self) -> str:
        return self.loaded.metadata.name


@dataclass(frozen=True)
class ToolSet:
    """An immutable snapshot: readers never see a half-applied load."""

    tools: dict[str, Tool]
    failures: tuple[LoadFailure, ...]


@dataclass(frozen=True)
class CallResult:
    tool: Tool
    invocation: Invocation


def new_host(config: DaemonConfig) -> WasmHost:
    return WasmHost(config.cache_dir, Limits(timeout_seconds=config.tool_timeout_seconds))


def discover(directories: Iterable[Path]) -> list[Path]:
    """Tool files in directory order, then by file name: the order that decides name clashes."""
    found: list[Path] = []
    for directory in directories:
        if directory.is_dir():
            found.extend(sorted(p for p in directory.iterdir() if p.suffix == TOOL_SUFFIX))
    return found


class Toolbox:
    """Loads tools from directories and invokes them on worker threads.

    When two files claim one tool name, the first in discovery order (the order
    of `--tools-dir`, then file name) wins and the other is reported as a failure.
    """

    def __init__(self, host: WasmHost, directories: list[Path], max_parallel_calls: int = 8) -> None:
        self.host = host
        self.directories = directories
        self._snapshot = ToolSet({}, ())
        self._load_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tool-load")
        self._call_pool = ThreadPoolExecutor(max_workers=max_parallel_calls, thread_name_prefix="tool-call")
        self._initial_load: Future[ToolSet] | None = None

    @property
    def snapshot(self) -> ToolSet:
        return self._snapshot

    # -- loading ------------------------------------------------------------------------

    def load_all(self) -> ToolSet:
        """Blocking: (re)load every tool file in the directories and publish the result."""
        tools: dict[str, Tool] = {}
        failures: list[LoadFailure] = []
        for path in discover(self.directories):
            try:
                loaded = self.host.load(path)
            except ToolLoadError as error:
                log.error("cannot load %s: %s", path, error)
                failures.append(LoadFailure(path, str(error)))
                continue
            name = loaded.metadata.name
            if name in tools:
                winner = tools[name].loaded.path
                failures.append(LoadFailure(path, f"tool name {name!r} is already provided by {winner}"))
                log.error("ignoring %s: tool name %r is already provided by %s", path, name, winner)
                continue
            tools[name] = Tool(loaded, input_schema(loaded.metadata))
            log.info(
                "loaded tool %s %s from %s in %.2f s%s",
                name,
                loaded.metadata.version,
                path,
                loaded.load_seconds,
                " (cached)" if loaded.from_cache else "",
            )
        self._snapshot = ToolSet(tools, tuple(failures))
        return self._snapshot

    def start_loading(self) -> Future[ToolSet]:
        """Begin the first load in the background; calls wait for it via `ready()`."""
        if self._initial_load is None:
            self._initial_load = self._load_pool.submit(self.load_all)
        return self._initial_load

    async def ready(self) -> ToolSet:
        await asyncio.wrap_future(self.start_loading())
        return self._snapshot

    # -- invoking -----------------------------------------------------------------------

    def prepare_call(self, name: str, arguments: object) -> tuple[Tool, dict[str, Any]]:
        """Resolve and validate a call. Raises UnknownTool or ArgumentError; never runs the tool."""
        tool = self._snapshot.tools.get(name)
        if tool is None:
            raise UnknownTool(name, self._snapshot.tools)
        validate_arguments(tool.input_schema, arguments)
        assert isinstance(arguments, dict)  # the schema says "object"
        return tool, coerce_arguments(tool.loaded.metadata, arguments)

    def invoke_blocking(self, name: str, arguments: object) -> CallResult:
        tool, coerced = self.prepare_call(name, arguments)
        return CallResult(tool, self.host.invoke(tool.loaded, coerced))

    async def invoke(self, name: str, arguments: object) -> CallResult:
        await self.ready()
        tool, coerced = self.prepare_call(name, arguments)
        loop = asyncio.get_running_loop()
        invocation = await loop.run_in_executor(self._call_pool, self.host.invoke, tool.loaded, coerced)
        return CallResult(tool, invocation)

    def close(self) -> None:
        self._load_pool.shutdown(wait=False, cancel_futures=True)
        self._call_pool.shutdown(wait=False, cancel_futures=True)
        self.host.close()


__all__ = ["ArgumentError", "CallResult", "LoadFailure", "Tool", "ToolSet", "Toolbox", "UnknownTool"]
