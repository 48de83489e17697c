"""Keeps a Toolbox equal to its directories while the daemon runs (watchfiles, inotify)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from watchfiles import Change, watch

from llama_agent.runtime.tools.policy import POLICY_SUFFIX
from llama_agent.runtime.wasm.workers import WorkerGone
from llama_agent.services.tools.registry import (
    TOOL_SUFFIX,
    ChangeListener,
    Toolbox,
    ToolSetChange,
    ensure_directories,
)

log = logging.getLogger(__name__)

# Events closer together than STEP are one burst; a burst is cut at DEBOUNCE.
STEP_MS = 30
DEBOUNCE_MS = 1000
# With no events for this long, reconcile anyway (stat only): covers changes made
# between the first load and the start of the watch, and file systems that drop events.
RESCAN_MS = 2000
RETRY_UNSETTLED_SECONDS = 0.1


def _is_tool_file(change: Change, path: str) -> bool:
    return path.endswith((TOOL_SUFFIX, POLICY_SUFFIX))


def _watch_filter(grants_file: Path | None) -> Callable[[Change, str], bool]:
    """Tool files, and the grants file: an approval made with `llama-agent tools grant` applies at
    once (without the event, within RESCAN_MS: every reconcile checks the file's size and mtime)."""

    def accept(change: Change, path: str) -> bool:
        if _is_tool_file(change, path):
            return True
        return (
            grants_file is not None
            and os.path.basename(path) == grants_file.name
            and os.path.realpath(os.path.dirname(path)) == os.path.realpath(grants_file.parent)
        )

    return accept


class ToolWatcher:
    def __init__(self, toolbox: Toolbox, on_change: ChangeListener, grants_file: Path | None = None) -> None:
        self._toolbox = toolbox
        self._on_change = on_change
        self._grants_file = grants_file
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tool-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            self._watch()
        except WorkerGone:
            if not self._stop.is_set():
                raise
            log.debug("the tool watcher stopped in the middle of a load: the daemon is stopping")

    def _watch(self) -> None:
        directories = self._toolbox.directories
        ensure_directories(directories)
        self._toolbox.warm_cache()
        # The first load is not announced: clients learn it from tools/list, which waits for it.
        self._reconcile(set(), announce=False)
        watched = [*directories]
        # Its directory, if it exists: one created later is still read at each rescan.
        if self._grants_file is not None and self._grants_file.parent.is_dir():
            watched.append(self._grants_file.parent)
        log.info("watching %s for tool changes", ", ".join(map(str, watched)))
        for changes in watch(
            *watched,
            watch_filter=_watch_filter(self._grants_file),
            step=STEP_MS,
            debounce=DEBOUNCE_MS,
            rust_timeout=RESCAN_MS,
            yield_on_timeout=True,
            stop_event=self._stop,
            recursive=False,
            raise_interrupt=False,
        ):
            self._reconcile({Path(path) for _, path in changes})

    def _reconcile(self, touched: set[Path], announce: bool = True) -> None:
        result = self._toolbox.reconcile(touched)
        if announce:
            self._publish(result.change)
        while result.unsettled and not self._stop.wait(RETRY_UNSETTLED_SECONDS):
            result = self._toolbox.reconcile(result.unsettled)
            self._publish(result.change)

    def _publish(self, change: ToolSetChange) -> None:
        if change:
            log.info(
                "tools changed: added %s, removed %s, changed %s, %d failed",
                list(change.added),
                list(change.removed),
                list(change.changed),
                len(change.failed),
            )
            self._on_change(change)
