"""Stateless replicas: two `serve --listen` processes sharing one tenants file, the tools
directories, the grants files and a compile cache filled and sealed beforehand, which both only
read. A client of a replica killed with SIGKILL goes on at the other; a change of the tenants file
(or of a grants file, made through the other replica) holds on both within seconds.

The model is scripted (tests/scripted_model.py); everything else is the daemon's own, over real
sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.clients import run_cli
from tests.scripted_model import answer
from tests.service import LspSocket, Service, tenant_table
from tests.wat_tools import tool_wasm

ALPHA, BETA, DELTA = "alpha-token", "beta-token", "delta-token"
ALWAYS_ALLOW = "Always allow"
RELOAD_SECONDS = 5.0  # the tenants file is polled every second; a change holds well within this
GOING_AWAY = 1001


@dataclass
class Deployment:
    base: Path
    tenants_file: Path
    roots: dict[str, Path]
    tools: dict[str, Path]
    cache: Path
    grants: Path
    replicas: list[Service] = field(default_factory=list)

    def table(self, name: str, token: str, **extra: Any) -> str:
        return tenant_table(name, token, self.roots[name], **extra)

    def alpha(self) -> str:
        tools_dirs = [str(self.tools["alpha"])]
        return self.table("alpha", ALPHA, tools_dirs=tools_dirs, grants_file=str(self.grants / "alpha.toml"))

    def alpha_and_beta(self) -> str:
        return self.alpha() + self.table("beta", BETA)


def make_tools(directory: Path, *names: str) -> Path:
    directory.mkdir(parents=True)
    for name in names:
        (directory / f"{name}.wasm").write_bytes(tool_wasm(name))
    return directory


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under `directory`: its size and modification time."""
    found = {".": (0, directory.stat().st_mtime_ns)}
    for path in sorted(directory.rglob("*")):
        info = path.stat()
        found[str(path.relative_to(directory))] = (info.st_size, info.st_mtime_ns)
    return found


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    roots = {name: tmp_path / "roots" / name for name in ("alpha", "beta", "delta")}
    for root in roots.values():
        (root / "project").mkdir(parents=True)
    tools = {
        "shared": make_tools(tmp_path / "tools" / "shared", "echo"),
        "alpha": make_tools(tmp_path / "tools" / "alpha", "asker"),
        "delta": make_tools(tmp_path / "tools" / "delta", "delta_only"),  # never in the cache
    }
    # alpha's own tool asks for a folder of its root: an approval, kept in alpha's grants file.
    policy = f'[[dirs]]\nhost = "{roots["alpha"] / "project"}"\nguest = "/own"\nmode = "ro"\n'
    (tools["alpha"] / "asker.policy.toml").write_text(policy)
    grants = tmp_path / "grants"
    grants.mkdir()
    # Build time: the cache filled and sealed for the shared tools and alpha's.
    cache = tmp_path / "cache"
    built = run_cli(
        "tools", "seal", "--cache-dir", cache, "--tools-dir", tools["shared"], "--tools-dir", tools["alpha"],
        config_dir=tmp_path / "build-config",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    tenants_file = tmp_path / "tenants.toml"
    options: list[str | Path] = ["--tools-dir", tools["shared"], "--cache-dir", cache, "--cache-read-only"]
    options += ["--tenants", tenants_file, "--lazy-model"]
    script = {"turns": [answer("ok")]}
    deployment = Deployment(tmp_path, tenants_file, roots, tools, cache, grants)
    tenants_file.write_text(deployment.alpha_and_beta())
    try:
        for name in ("a", "b"):
            # Each replica's private directories (what the cache lacks) in a temporary directory
            # of its own: a replica killed with SIGKILL cannot remove them.
            (tmp_path / name / "tmp").mkdir(parents=True)
            env = {"LLAMA_AGENT_CONFIG_DIR": str(tmp_path / "config"), "TMPDIR": str(tmp_path / name / "tmp")}
            deployment.replicas.append(Service.start(tmp_path / name, script, options, env))
        for replica in deployment.replicas:
            wait_ready(replica.url)
        yield deployment
    finally:
        for replica in deployment.replicas:
            replica.stop()


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        time.sleep(0.05)
    raise AssertionError("the replica never became ready")


async def session(replica: Service, token: str) -> LspSocket:
    client = await LspSocket.open(replica.ws_url, token)
    initialized = await client.initialize()
    assert "result" in initialized, initialized
    return client


async def tool_names(client: LspSocket) -> list[str]:
    return sorted(tool["name"] for tool in (await client.result("tools/list"))["tools"])


async def echo(client: LspSocket, value: str) -> str:
    result = await client.result("tools/invoke", {"name": "echo", "arguments": {"value": value}})
    return str(result["content"][0]["text"])


async def refused(replica: Service, token: str) -> bool:
    try:
        client = await LspSocket.open(replica.ws_url, token)
    except InvalidStatus as error:
        assert error.response.status_code == 401
        return True
    await client.close()
    return False


async def until(condition: Any, seconds: float = RELOAD_SECONDS) -> float:
    """Poll the async `condition` until it holds; how long that took."""
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < seconds, "not within the time allowed"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def mcp_initialize(replica: Service, token: str) -> httpx.Response:
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
    }
    client = {"name": "t", "version": "1"}
    params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": client}
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    return httpx.post(f"{replica.url}/mcp", json=body, headers=headers, timeout=10)


async def test_a_client_of_a_killed_replica_goes_on_at_the_other(deployment: Deployment) -> None:
    a, b = deployment.replicas
    cache_before = snapshot(deployment.cache)
    client = await session(a, ALPHA)
    names = await tool_names(client)
    assert names == ["asker", "echo"]
    assert await echo(client, "before") == "before"

    a.process.kill()  # SIGKILL: nothing of A's runs after this
    a.process.wait()
    killed = time.monotonic()
    await asyncio.wait_for(client._reader, 5)  # the connection is gone (no close frame)
    await client.close()

    again = await session(b, ALPHA)  # what a load balancer does: the next connection goes to B
    assert await tool_names(again) == names
    assert await echo(again, "after") == "after"
    took = time.monotonic() - killed
    assert took < 2.0
    print(f"reconnected to the other replica and served {took:.3f} s after the kill")
    await again.close()
    # Neither replica wrote the shared cache; both verified and used its entries.
    assert snapshot(deployment.cache) == cache_before
    for replica in (a, b):
        assert "never writing it" in replica.log.read_text()


async def test_a_tenant_added_to_the_file_is_served_by_both_replicas(deployment: Deployment) -> None:
    cache_before = snapshot(deployment.cache)
    for replica in deployment.replicas:
        assert await refused(replica, DELTA)
    added = deployment.table("delta", DELTA, tools_dirs=[str(deployment.tools["delta"])])
    deployment.tenants_file.write_text(deployment.alpha_and_beta() + added)  # in place, as an editor does

    async def accepted_everywhere() -> bool:
        return not any([await refused(replica, DELTA) for replica in deployment.replicas])

    took = await until(accepted_everywhere)
    for replica in deployment.replicas:
        client = await session(replica, DELTA)
        # delta's own tool was never in the cache: compiled for the replica alone.
        assert await tool_names(client) == ["delta_only", "echo"]
        assert await echo(client, "delta") == "delta"
        await client.close()
        assert mcp_initialize(replica, DELTA).status_code == 200
    assert snapshot(deployment.cache) == cache_before
    print(f"a new tenant accepted by both replicas {took:.2f} s after the file was written")


async def test_a_bad_file_keeps_the_last_good_tenants_and_a_removed_one_is_let_go(
    deployment: Deployment,
) -> None:
    a, b = deployment.replicas
    beta_client, alpha_client = await session(a, BETA), await session(a, ALPHA)
    deployment.tenants_file.write_text(deployment.alpha_and_beta() + "[[tenant]]\nname = 'x'\ncolour = 1\n")
    await asyncio.sleep(2.5)  # two polls and more
    for replica in deployment.replicas:
        assert not await refused(replica, ALPHA) and not await refused(replica, BETA)
        errors = [line for line in replica.log.read_text().splitlines() if "colour" in line]
        assert len(errors) == 1 and "tenant[2].colour: unknown key" in errors[0], errors
    assert await echo(beta_client, "still") == "still"

    deployment.tenants_file.write_text(deployment.alpha())  # beta removed

    async def beta_refused_everywhere() -> bool:
        return all([await refused(replica, BETA) for replica in deployment.replicas])

    await until(beta_refused_everywhere)
    await asyncio.wait_for(beta_client._reader, RELOAD_SECONDS)  # the server closed it
    assert beta_client.websocket.close_code == GOING_AWAY
    assert await echo(alpha_client, "unchanged") == "unchanged"  # alpha's connection went on
    await alpha_client.close()
    assert not await refused(b, ALPHA)


class Approving(LspSocket):
    """A client whose person answers every question with "Always allow"."""

    async def _read_frames(self) -> None:
        async for frame in self.websocket:
            message = json.loads(frame)
            if message.get("method") == "window/showMessageRequest" and "id" in message:
                reply = {"jsonrpc": "2.0", "id": message["id"], "result": {"title": ALWAYS_ALLOW}}
                await self.websocket.send(json.dumps(reply))
            elif "method" in message and "id" in message:
                await self.websocket.send(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": None}))
            elif "id" in message:
                async with self._arrived:
                    self.answers[message.get("id")] = message
                    self._arrived.notify_all()


async def test_an_approval_made_through_one_replica_holds_on_the_other(deployment: Deployment) -> None:
    a, b = deployment.replicas
    at_a = await session(a, ALPHA)

    async def asker_pending() -> Any:
        tools = (await at_a.result("tools/list"))["tools"]
        return next(tool for tool in tools if tool["name"] == "asker")["grantsPending"]

    assert await asker_pending() is not None
    approver = await Approving.open(b.ws_url, ALPHA)
    await approver.initialize()  # B asks about asker's request; the person always allows it

    async def approved_at_a() -> bool:
        return await asker_pending() is None

    await until(approved_at_a)
    assert "asker" in (deployment.grants / "alpha.toml").read_text()
    await approver.close()
    await at_a.close()
