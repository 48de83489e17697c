"""The tenants file reloaded while the service runs: services/tenants/reload.py notices a change,
this applies it.

The reloader's thread opens the cores of new and rebuilt tenants (blocking: never on the event
loop); the event loop starts their MCP session managers, then swaps everything in one step with
no await in it (cores, quotas, MCP endpoints, the tenants the verifier knows), so that a request
sees the old tenants or the new ones, never half of each; then the thread closes the cores let
go. A removed tenant's LSP connections, and a rebuilt one's, are closed with 1001 (going away:
the client reconnects, and is refused or served by the new core); their MCP sessions end (the
next request on one gets 401 or 404, and the client opens another). A tenant whose token or
limits alone changed keeps its core, connections and sessions; its new limits hold at once.
"""

from __future__ import annotations

import asyncio
import logging

from llama_agent.core import Core
from llama_agent.faces.network.lsp_socket import GOING_AWAY
from llama_agent.faces.network.mcp_http import McpEndpoint, TenantMcp
from llama_agent.faces.network.state import ServiceState
from llama_agent.services.tenants.quotas import TenantQuota
from llama_agent.services.tenants.reload import TenantsChange, TenantsReloader

log = logging.getLogger(__name__)


class McpManagers:
    """Each tenant's MCP session manager, run in a task of its own, so that one can start or stop
    while the others serve (a manager's `run` holds its sessions' tasks: leaving it ends them)."""

    def __init__(self) -> None:
        self._stops: dict[TenantMcp, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, mcp: TenantMcp) -> None:
        """Run `mcp`'s manager; returns once it takes requests."""
        started, stop = asyncio.Event(), asyncio.Event()

        async def run() -> None:
            async with mcp.manager.run():
                started.set()
                await stop.wait()

        task = asyncio.create_task(run(), name=f"mcp-{mcp.tenant.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        waiting = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not started.is_set():
            task.result()  # raises what stopped it
        self._stops[mcp] = stop

    def stop(self, mcp: TenantMcp) -> None:
        """End `mcp`'s manager and its sessions (in the background)."""
        stop = self._stops.pop(mcp, None)
        if stop is not None:
            stop.set()

    async def stop_all(self) -> None:
        for mcp in list(self._stops):
            self.stop(mcp)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)


class TenantsReloading:
    """Applies each change of the tenants file to the running service (see the module's docstring)."""

    def __init__(
        self,
        state: ServiceState,
        mcp: McpEndpoint,
        managers: McpManagers,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._state = state
        self._mcp = mcp
        self._managers = managers
        self._loop = loop
        verifier = state.verifier
        self._reloader = TenantsReloader(
            state.settings.tenants_file, verifier.tenants, self._apply, verifier.check
        )

    def start(self) -> None:
        self._reloader.start()

    def stop(self) -> None:
        self._reloader.stop()

    def _apply(self, change: TenantsChange) -> None:
        """On the reloader's thread: open, swap (on the loop), close. Raises if the change cannot
        be applied; then nothing of it was."""
        opened: dict[str, Core] = {}
        try:
            for tenant in (*change.added, *change.rebuilt):
                opened[tenant.name] = self._state.service.open_tenant(tenant)
            swapping = asyncio.run_coroutine_threadsafe(self._swap(change, opened), self._loop)
            retired = swapping.result()
        except BaseException:
            for core in opened.values():
                core.close()
            raise
        for core in retired:
            core.close()

    async def _swap(self, change: TenantsChange, opened: dict[str, Core]) -> list[Core]:
        """On the loop: the new tenants' MCP managers started, then every table changed at once.
        Returns the cores let go, for the caller to close off the loop."""
        state, service = self._state, self._state.service
        fresh: dict[str, TenantMcp] = {}
        # A rebuilt tenant keeps its quota: its sessions still open give theirs back to it.
        quotas = {
            tenant.name: service.quotas.get(tenant.name) or TenantQuota(tenant.limits)
            for tenant in (*change.added, *change.rebuilt)
        }
        try:
            for tenant in (*change.added, *change.rebuilt):
                fresh[tenant.name] = TenantMcp(tenant, opened[tenant.name], quotas[tenant.name])
                await self._managers.start(fresh[tenant.name])
            if state.stopping:
                raise RuntimeError("the service is stopping")
        except BaseException:
            for mcp in fresh.values():
                self._managers.stop(mcp)
            raise
        # From here to the return, no await: requests see the old tenants or the new ones.
        retired = [service.cores.pop(tenant.name) for tenant in (*change.removed, *change.rebuilt)]
        for tenant in change.removed:
            del service.quotas[tenant.name]
        for tenant in (*change.removed, *change.rebuilt):
            self._managers.stop(self._mcp.tenants.pop(tenant.name))
        for name, mcp in fresh.items():
            service.cores[name] = opened[name]
            service.quotas[name] = quotas[name]
            self._mcp.tenants[name] = mcp
        for tenant in (*change.rebuilt, *change.updated):
            service.quotas[tenant.name].set_limits(tenant.limits)
        state.verifier.tenants = change.tenants
        leaving = {tenant.name for tenant in (*change.removed, *change.rebuilt)}
        closed = state.close_connections(leaving, GOING_AWAY)
        if closed:
            log.info("closed %d LSP connection(s) of removed or rebuilt tenants (1001)", closed)
        return retired
