"""The tenants file, reloaded while the service runs: what changed, and a watcher that notices.

Replicas of a service share one tenants file (a ConfigMap, a file on shared storage) and each
reads it again when it changes. `TenantsReloader` polls the file's signature (device, inode, size,
modification and change times: `os.stat`, so a ConfigMap's swapped `..data` link is followed) once
a second on a thread of its own: one `stat` a second, nothing on the event loop, and no event
source that a rename or a symlink swap could outrun. Once a new signature has held for a poll (a
file being written in place is not read half-written), it reads the file as it is read at start
(bounded, every key checked), and hands the difference (`TenantsChange`) to its listener: a change
holds within about two seconds. A file that cannot be used keeps the last good tenants: one error
is logged, naming the file and the key at fault, until the file changes again.

What a change means for a running service (the network face applies it):

- `added`: a new tenant, accepted once its core is open;
- `removed`: no longer accepted; its open connections are closed (going away, 1001);
- `rebuilt`: its `workspace_root`, `tools_dirs` or `grants_file` changed, which its core is built
  from: a new core, and its open connections closed (1001: they reconnect to the new one);
- `updated`: only its token or its limits changed: the core and its connections are kept, and the
  new token and limits hold from now on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llama_agent.services.tenants.config import Tenant, Tenants, TenantsFileError, load_tenants

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
# A file modified this recently is read again at the next poll even if its signature is the same:
# two writes of the same size within one tick of the file system's clock look alike.
RECENT_NANOSECONDS = 2_000_000_000

Signature = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class TenantsChange:
    """How `tenants` differs from the tenants served until now (see the module's docstring)."""

    tenants: Tenants
    added: tuple[Tenant, ...] = ()
    removed: tuple[Tenant, ...] = ()  # as they were
    rebuilt: tuple[Tenant, ...] = ()  # as they are now
    updated: tuple[Tenant, ...] = ()  # as they are now

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.rebuilt or self.updated)

    def summary(self) -> str:
        parts = [
            f"{what} {', '.join(tenant.name for tenant in tenants)}"
            for what, tenants in (
                ("added", self.added),
                ("removed", self.removed),
                ("rebuilt", self.rebuilt),
                ("updated", self.updated),
            )
            if tenants
        ]
        return "; ".join(parts) or "no change"


def _core_of(tenant: Tenant) -> tuple[object, ...]:
    """What a tenant's core is built from: a change of any of it needs a new core."""
    return (tenant.workspace_root, tenant.tools_dirs, tenant.grants_file)


def tenants_change(old: Tenants, new: Tenants) -> TenantsChange:
    """How `new` differs from `old`, tenant by tenant (matched by name)."""
    before = {tenant.name: tenant for tenant in old}
    after = {tenant.name: tenant for tenant in new}
    kept = [name for name in after if name in before]
    return TenantsChange(
        new,
        added=tuple(tenant for name, tenant in after.items() if name not in before),
        removed=tuple(tenant for name, tenant in before.items() if name not in after),
        rebuilt=tuple(after[name] for name in kept if _core_of(after[name]) != _core_of(before[name])),
        updated=tuple(
            after[name]
            for name in kept
            if _core_of(after[name]) == _core_of(before[name]) and after[name] != before[name]
        ),
    )


def signature(path: Path) -> Signature | None:
    """What changes whenever the file does (None: it cannot be stat'ed)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class TenantsReloader:
    """Reads `path` again whenever it changes, and calls `on_change` (from its own thread) with
    each valid difference from the tenants served. `check` refuses a set the service cannot use
    (tenants without tokens when no JWT is configured, say) by raising TenantsFileError. If
    `on_change` raises, the change is not taken: the tenants served stay the old ones."""

    def __init__(
        self,
        path: Path,
        current: Tenants,
        on_change: Callable[[TenantsChange], None],
        check: Callable[[Tenants], None] = lambda tenants: None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.path = path
        self.current = current
        self._on_change = on_change
        self._check = check
        self._poll_seconds = poll_seconds
        # The signature at the last poll, and at the last read. The file is read once it settles
        # after start too: it may have changed since it was read at start.
        self._seen = signature(path)
        self._read: Signature | None = None
        self._has_read = False
        self._reported: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tenants-reloader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            try:
                self.poll()
            except Exception:  # the service goes on with the tenants it has
                log.exception("reloading the tenants file %s failed", self.path)

    def poll(self) -> TenantsChange | None:
        """Blocking: read the file if it changed since it was last read and has not changed since
        the last poll; the change taken, if any."""
        seen = signature(self.path)
        settled, self._seen = seen == self._seen, seen
        if not settled or (self._has_read and seen == self._read and not _recent(seen)):
            return None
        self._read, self._has_read = seen, True
        try:
            tenants = load_tenants(self.path)
            self._check(tenants)
        except TenantsFileError as error:
            self._report(str(error))
            return None
        self._reported = None
        change = tenants_change(self.current, tenants)
        if not change:
            return None
        try:
            self._on_change(change)
        except Exception as error:
            summary = change.summary()
            self._report(f"tenants file {self.path}: the change ({summary}) was not applied: {error}")
            return None
        self.current = tenants
        log.info("tenants file %s reloaded: %s", self.path, change.summary())
        return change

    def _report(self, problem: str) -> None:
        """Log `problem` once (not at every poll while the file stays wrong)."""
        if problem != self._reported:
            self._reported = problem
            log.error("%s; still serving the tenants of its last good version", problem)


def _recent(seen: Signature | None) -> bool:
    return seen is not None and time.time_ns() - seen[3] < RECENT_NANOSECONDS
