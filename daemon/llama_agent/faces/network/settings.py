"""What `serve --listen` is told: where to listen, the tenants file, TLS, and JWT."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llama_agent.services.tenants.auth import JwtSettings


@dataclass(frozen=True)
class ServiceSettings:
    host: str
    port: int  # 0: any free port (the one taken is logged)
    tenants_file: Path
    tls_cert: Path | None = None
    tls_key: Path | None = None
    jwt: JwtSettings | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert is not None else "http"


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets) as a host and a port; ValueError saying what is wrong."""
    host, colon, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"the port must be 0 to 65535, got {port}")
    return host, port
