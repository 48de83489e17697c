"""What the routes share: the tenants' cores and quotas, whether the service is ready or stopping,
and what is in flight (for the grace period of a stop). The tenants may change while the service
runs (reloading.py changes them, on the event loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol

from llama_agent.core import Core, Service
from llama_agent.faces.network.settings import ServiceSettings
from llama_agent.services.tenants.auth import TokenVerifier
from llama_agent.services.tenants.config import Tenant
from llama_agent.services.tenants.quotas import TenantQuota


class Connection(Protocol):
    """A long-lived client connection (an LSP WebSocket) of a tenant: refuses new requests, says
    whether any are running, and closes with a WebSocket close code."""

    @property
    def tenant(self) -> str: ...

    def stop_accepting(self) -> None: ...

    def busy(self) -> bool: ...

    def close(self, code: int) -> None: ...


@dataclass
class ServiceState:
    settings: ServiceSettings
    service: Service
    verifier: TokenVerifier
    stopping: bool = False
    tools_loaded: bool = False
    connections: set[Connection] = field(default_factory=set)
    requests_in_flight: int = 0  # MCP requests being answered
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)

    def core(self, tenant: Tenant) -> Core:
        return self.service.cores[tenant.name]

    def quota(self, tenant: Tenant) -> TenantQuota:
        return self.service.quotas[tenant.name]

    def ready(self) -> bool:
        return self.tools_loaded and not self.stopping

    def begin_stop(self) -> None:
        """SIGTERM: not ready from now on, nothing new accepted (the stop itself is run.py's)."""
        self.stopping = True
        for connection in self.connections:
            connection.stop_accepting()
        self.stop_requested.set()

    def busy(self) -> bool:
        return self.requests_in_flight > 0 or any(c.busy() for c in self.connections)

    def close_connections(self, tenants: Collection[str], code: int) -> int:
        """Close the connections of `tenants` with `code` (the tenants file was reloaded and they
        were removed, or their core rebuilt); how many."""
        closing = [connection for connection in self.connections if connection.tenant in tenants]
        for connection in closing:
            connection.close(code)
        return len(closing)

    def track(self) -> Callable[[], None]:
        """Count a request in flight until the returned callable is called."""
        self.requests_in_flight += 1
        done = False

        def finished() -> None:
            nonlocal done
            if not done:
                done = True
                self.requests_in_flight -= 1

        return finished
