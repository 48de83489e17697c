"""`serve --listen`: the network service, over real sockets on 127.0.0.1, with real clients.

One service (two tenants with tokens, JWT from a JWKS served here, a third tenant held to one
session) serves most tests; the stop and TLS have services of their own. The model is scripted
(tests/scripted_model.py); everything else is the daemon's own.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from llama_agent.common.errors import INVALID_PARAMS, QUOTA_EXCEEDED
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from tests.scripted_model import answer, call
from tests.service import LspSocket, Service, tenant_table
from tests.wat_tools import tool_wasm

ALPHA, BETA, GAMMA = "alpha-token", "beta-token", "gamma-token"
ISSUER, AUDIENCE = "https://id.example.test", "llama-agent-test"
RUN_SCRIPT = [call("echo", value="from the run"), answer("echoed")]


class Jwks:
    """An RSA key made here, its JWKS served on 127.0.0.1, and tokens signed with it."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "iat": now, "tenant": "beta", **claims}
        return jwt.encode(payload, self.key, "RS256", headers={"kid": "k1"})


def make_tools(directory: Path, *names: str, behaviour: str = "echo") -> Path:
    directory.mkdir(parents=True)
    for name in names:
        (directory / f"{name}.wasm").write_bytes(tool_wasm(name, behaviour=behaviour))
    return directory


def reaching_tools(directory: Path, roots: dict[str, Path]) -> Path:
    """Gamma's tools whose policies ask for what a tenant's tool may not have (another tenant's
    files, the service's environment), and one that asks for a folder of its own root."""
    make_tools(directory, "reach_other", "reach_env", "reach_own")
    asks = {
        "reach_other": f'[[dirs]]\nhost = "{roots["alpha"]}"\nguest = "/other"\nmode = "ro"\n',
        "reach_env": 'env = ["HOME"]\n',
        "reach_own": f'[[dirs]]\nhost = "{roots["gamma"] / "project"}"\nguest = "/own"\nmode = "ro"\n',
    }
    for name, policy in asks.items():
        (directory / f"{name}.policy.toml").write_text(policy)
    return directory


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    keys = Jwks()
    yield keys
    keys.server.shutdown()


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("roots")
    made = {name: base / name for name in ("alpha", "beta", "gamma", "outside")}
    for path in made.values():
        (path / "project").mkdir(parents=True)
    (made["alpha"] / "escape").symlink_to(made["outside"])
    return made


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, jwks: Jwks, roots: dict[str, Path]
) -> Iterator[Service]:
    base = tmp_path_factory.mktemp("service")
    shared = make_tools(base / "shared", "echo")
    tenants = base / "tenants.toml"
    tenants.write_text(
        tenant_table("alpha", ALPHA, roots["alpha"], tools_dirs=[str(make_tools(base / "a", "alpha_only"))])
        + tenant_table("beta", BETA, roots["beta"], tools_dirs=[str(make_tools(base / "b", "beta_only"))])
        + tenant_table(
            "gamma",
            GAMMA,
            roots["gamma"],
            tools_dirs=[str(reaching_tools(base / "g", roots))],
            limits={"max_sessions": 1, "calls_per_minute": 3},
        )
    )
    options: list[str | Path] = [
        "--tools-dir",
        shared,
        "--cache-dir",
        cache_dir,
        "--tenants",
        tenants,
        "--lazy-model",
    ]
    options += ["--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE, "--jwks-url", jwks.url]
    running = Service.start(
        base, {"turns": RUN_SCRIPT}, options, {"LLAMA_AGENT_CONFIG_DIR": str(base / "config")}
    )
    _wait_ready(running.url)
    yield running
    running.stop()


def _wait_ready(url: str, verify: Any = True) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/readyz", verify=verify).status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("the service never became ready")


async def test_lsp_over_a_websocket_serves_the_whole_lifecycle(service: Service) -> None:
    client = await LspSocket.open(service.ws_url, ALPHA)
    initialized = await client.initialize()
    assert initialized["result"]["capabilities"]["experimental"]["llamaAgent"]["methods"]
    listed = await client.result("tools/list")
    assert sorted(tool["name"] for tool in listed["tools"]) == ["alpha_only", "echo"]
    invoked = await client.result("tools/invoke", {"name": "echo", "arguments": {"value": "hello"}})
    assert invoked["content"][0]["text"] == "hello" and not invoked["isError"]
    run = await client.result("agent/run", {"prompt": "echo something"})
    assert run["answer"] == "echoed" and run["steps"][0]["result"] == "from the run"
    assert (await client.call("shutdown"))["result"] is None
    await client.notify("exit")
    await asyncio.wait_for(client.websocket.wait_closed(), 10)
    assert client.websocket.close_code == 1000


async def test_a_frame_that_is_not_json_gets_the_stdio_answer(service: Service) -> None:
    client = await LspSocket.open(service.ws_url, ALPHA)
    await client.websocket.send('{"jsonrpc": "2.0", "id": 5, "method": ')
    assert (await client.answer(None))["error"]["code"] == -32700
    await client.send({"jsonrpc": "2.0", "id": 6, "method": "tools/list"})
    assert (await client.answer(6))["error"]["code"] == -32002  # not initialized
    await client.close()


async def test_mcp_over_streamable_http(service: Service) -> None:
    http_client = httpx.AsyncClient(headers={"Authorization": f"Bearer {BETA}"}, timeout=30)
    async with (
        http_client,
        streamable_http_client(f"{service.url}/mcp", http_client=http_client) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = await session.list_tools()
        assert sorted(tool.name for tool in tools.tools) == ["beta_only", "echo"]
        result = await session.call_tool("echo", {"value": "over http"})
        assert not result.isError and result.content[0].text == "over http"  # type: ignore[union-attr]


def _mcp_initialize(url: str, token: str | None, session_id: str | None = None) -> httpx.Response:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if session_id is not None:
        headers["mcp-session-id"] = session_id
    params = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    if session_id is not None:
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    return httpx.post(f"{url}/mcp", json=body, headers=headers, timeout=10)


@pytest.mark.parametrize("token", [None, "not-a-token", "a.b.c"], ids=["none", "wrong", "not-a-jwt"])
async def test_without_a_known_token_401_with_the_challenge(service: Service, token: str | None) -> None:
    answered = _mcp_initialize(service.url, token)
    assert answered.status_code == 401
    challenge = answered.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{service.url}/.well-known/oauth-protected-resource"' in challenge
    with pytest.raises(InvalidStatus) as refused:
        await LspSocket.open(service.ws_url, token)
    assert refused.value.response.status_code == 401
    logged = service.log.read_text()
    assert all(secret not in logged for secret in (ALPHA, BETA, "not-a-token", "a.b.c"))


def test_protected_resource_metadata_names_the_issuer(service: Service) -> None:
    metadata = httpx.get(f"{service.url}/.well-known/oauth-protected-resource").json()
    assert metadata["authorization_servers"] == [ISSUER] and metadata["resource"] == service.url


async def test_a_valid_jwt_names_its_tenant(service: Service, jwks: Jwks) -> None:
    client = await LspSocket.open(service.ws_url, jwks.token())
    await client.initialize()
    listed = await client.result("tools/list")
    assert sorted(tool["name"] for tool in listed["tools"]) == ["beta_only", "echo"]
    await client.close()


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(time.time()) - 3600},
        {"aud": "another"},
        {"iss": "https://evil.test"},
        {"tenant": "nobody"},
    ],
    ids=["expired", "wrong audience", "wrong issuer", "unknown tenant"],
)
def test_a_jwt_that_does_not_hold_is_refused(service: Service, jwks: Jwks, claims: dict[str, Any]) -> None:
    assert _mcp_initialize(service.url, jwks.token(**claims)).status_code == 401


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"rootUri": "file:///tmp"}, "rootUri"),
        ({"workspaceFolders": [{"uri": "file:///etc", "name": "etc"}]}, "workspaceFolders[0].uri"),
        ({"rootUri": "ESCAPE"}, "rootUri"),
        ({"rootPath": "/"}, "rootPath"),
    ],
    ids=["outside", "folder outside", "symlink inside pointing outside", "rootPath"],
)
async def test_a_workspace_outside_the_tenants_root_is_invalid_params(
    service: Service, roots: dict[str, Path], params: dict[str, Any], field: str
) -> None:
    if params.get("rootUri") == "ESCAPE":
        params = {"rootUri": (roots["alpha"] / "escape").as_uri()}
    client = await LspSocket.open(service.ws_url, ALPHA)
    refused = await client.initialize(params)
    assert refused["error"]["code"] == INVALID_PARAMS and field in refused["error"]["message"]
    await client.close()


async def test_a_workspace_inside_the_root_is_granted(service: Service, roots: dict[str, Path]) -> None:
    client = await LspSocket.open(service.ws_url, ALPHA)
    assert "result" in await client.initialize({"rootUri": (roots["alpha"] / "project").as_uri()})
    await client.close()


async def test_another_tenants_tool_is_unknown(service: Service) -> None:
    client = await LspSocket.open(service.ws_url, ALPHA)
    await client.initialize()
    refused = await client.call("tools/invoke", {"name": "beta_only", "arguments": {"value": "x"}})
    assert refused["error"]["code"] == INVALID_PARAMS and "beta_only" in refused["error"]["message"]
    await client.close()


async def test_the_same_request_id_and_progress_token_on_two_tenants_never_cross(service: Service) -> None:
    alpha, beta = await LspSocket.open(service.ws_url, ALPHA), await LspSocket.open(service.ws_url, BETA)
    for client in (alpha, beta):
        await client.initialize()
    for client, prompt in ((alpha, "alpha's request"), (beta, "beta's request")):
        params = {"prompt": prompt, "workDoneToken": "the-token"}
        await client.send({"jsonrpc": "2.0", "id": 7, "method": "agent/run", "params": params})
    await beta.notify("window/workDoneProgress/cancel", {"token": "the-token"})
    answers = [await client.answer(7) for client in (alpha, beta)]
    for client in (alpha, beta):
        await client.close()
    assert all(answer["result"]["stopReason"] == "answer" for answer in answers), answers
    for client, own, other in ((alpha, "alpha's request", "beta's"), (beta, "beta's request", "alpha's")):
        progress = [n["params"]["value"] for n in client.notifications if n["method"] == "$/progress"]
        begun = [value["message"] for value in progress if value["kind"] == "begin"]
        assert begun == [own], progress
        assert not any(other in json.dumps(value) for value in progress), progress


def test_an_mcp_session_id_of_another_tenant_is_unknown(service: Service) -> None:
    opened = _mcp_initialize(service.url, ALPHA)
    assert opened.status_code == 200
    session_id = opened.headers["mcp-session-id"]
    assert _mcp_initialize(service.url, BETA, session_id).status_code == 404


async def test_sessions_over_the_tenants_limit_get_429(service: Service) -> None:
    first = await LspSocket.open(service.ws_url, GAMMA)
    with pytest.raises(InvalidStatus) as refused:
        await LspSocket.open(service.ws_url, GAMMA)
    assert refused.value.response.status_code == 429
    assert int(refused.value.response.headers["Retry-After"]) >= 1
    await first.close()
    await asyncio.sleep(0.3)  # the server sees the close
    second = await LspSocket.open(service.ws_url, GAMMA)
    await second.close()
    await asyncio.sleep(0.3)
    # An MCP session takes one too, and gives it back when it ends.
    opened = _mcp_initialize(service.url, GAMMA)
    assert opened.status_code == 200
    assert _mcp_initialize(service.url, GAMMA).status_code == 429
    ended = httpx.delete(
        f"{service.url}/mcp",
        headers={"Authorization": f"Bearer {GAMMA}", "mcp-session-id": opened.headers["mcp-session-id"]},
    )
    assert ended.status_code == 200
    await asyncio.sleep(0.3)
    third = await LspSocket.open(service.ws_url, GAMMA)
    await third.close()


def test_health_readiness_and_metrics(service: Service) -> None:
    assert httpx.get(f"{service.url}/healthz").status_code == 200
    assert httpx.get(f"{service.url}/readyz").text == "ready\n"
    scraped = httpx.get(f"{service.url}/metrics")
    assert scraped.status_code == 200
    list(text_string_to_metric_families(scraped.text))  # parses


async def test_calls_over_the_tenants_rate_get_the_quota_error_with_retry_after(service: Service) -> None:
    client = await LspSocket.open(service.ws_url, GAMMA)
    await client.initialize()
    echo = {"name": "echo", "arguments": {"value": "x"}}
    answers = [await client.call("tools/invoke", echo) for _ in range(4)]
    await client.close()
    assert all("result" in answer for answer in answers[:3]), answers
    error = answers[3]["error"]
    assert error["code"] == QUOTA_EXCEEDED and "calls_per_minute" in error["message"]
    assert error["data"]["quota"] == "calls_per_minute" and 1 <= error["data"]["retryAfter"] <= 60


async def test_a_tenants_tool_is_never_granted_outside_its_root_nor_the_environment(service: Service) -> None:
    client = await LspSocket.open(service.ws_url, GAMMA)
    await client.initialize()
    listed = {tool["name"]: tool for tool in (await client.result("tools/list"))["tools"]}
    await client.close()
    assert "outside the tenant's workspace root" in listed["reach_other"]["policyError"]
    assert listed["reach_other"]["requestedGrants"] is None  # nobody is even asked
    assert "no environment variables" in listed["reach_env"]["policyError"]
    assert listed["reach_own"]["policyError"] is None
    assert listed["reach_own"]["requestedGrants"] is not None  # inside its root: it may ask


def _samples(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def _value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(value for have, value in samples.get(name, []) if labels.items() <= have.items())


async def test_metrics_count_requests_calls_sessions_and_refusals_by_tenant(service: Service) -> None:
    before = _samples(service.url)
    client = await LspSocket.open(service.ws_url, BETA)
    await client.initialize()
    for _ in range(2):
        assert "result" in await client.call("tools/invoke", {"name": "echo", "arguments": {"value": "x"}})
    during = _samples(service.url)
    await client.close()
    with pytest.raises(InvalidStatus):
        await LspSocket.open(service.ws_url, "not-a-token")
    after = _samples(service.url)

    def grew(name: str, by: float, **labels: str) -> bool:
        return _value(after, name, **labels) - _value(before, name, **labels) >= by

    invokes = {"method": "tools/invoke", "tenant": "beta", "outcome": "ok"}
    assert grew("llama_agent_requests_total", 2, **invokes)
    assert grew("llama_agent_request_seconds_count", 2, method="tools/invoke", tenant="beta")
    assert grew("llama_agent_tool_calls_total", 2, tool="echo", tenant="beta")
    assert grew(
        "llama_agent_requests_total", 1, method="/lsp", tenant="unauthenticated", outcome="unauthorized"
    )
    assert _value(during, "llama_agent_active_sessions", tenant="beta") >= 1
    # Nothing of beta's was counted as alpha's.
    assert _value(after, "llama_agent_requests_total", tenant="alpha", method="tools/invoke") == _value(
        before, "llama_agent_requests_total", tenant="alpha", method="tools/invoke"
    )


# -- the stop ----------------------------------------------------------------------------------


async def test_sigterm_lets_the_running_run_answer_then_closes_with_going_away(
    tmp_path: Path, cache_dir: Path, roots: dict[str, Path]
) -> None:
    slow = {"turns": [answer("slow " * 40)], "pieceSize": 4, "pieceDelay": 0.02}  # about 1 s
    service = _small_service(tmp_path, cache_dir, roots, slow)
    try:
        running, other = (
            await LspSocket.open(service.ws_url, ALPHA),
            await LspSocket.open(service.ws_url, BETA),
        )
        await running.initialize()
        await other.initialize()
        await running.send({"jsonrpc": "2.0", "id": 1, "method": "agent/run", "params": {"prompt": "go"}})
        await asyncio.sleep(0.2)
        # Another tenant's connection cancels "its" request 1: nothing of the first connection's.
        await other.notify("$/cancelRequest", {"id": 1})
        service.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.1)
        assert httpx.get(f"{service.url}/readyz").status_code == 503
        answered = await running.answer(1)
        assert answered["result"]["answer"].startswith("slow"), answered
        await asyncio.wait_for(running.websocket.wait_closed(), 10)
        assert running.websocket.close_code == 1001
        assert await asyncio.to_thread(service.process.wait, 20) == 0
    finally:
        service.stop()


def _worker_pids(service: Service) -> list[int]:
    """The service's tool worker processes (its children running the worker module)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == service.process.pid and b"llama_agent.runtime.wasm.worker" in command:
            found.append(int(entry))
    return found


def _small_service(
    tmp_path: Path,
    cache_dir: Path,
    roots: dict[str, Path],
    script: dict[str, Any],
    *options: str | Path,
    verify: Any = True,
) -> Service:
    """A service of its own (tenants alpha and beta, the tools echo, nap and busy), once ready."""
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(
        tenant_table("alpha", ALPHA, roots["alpha"]) + tenant_table("beta", BETA, roots["beta"])
    )
    tools = make_tools(tmp_path / "t", "echo")
    (tools / "nap.wasm").write_bytes(tool_wasm("nap", behaviour="sleep"))
    (tools / "busy.wasm").write_bytes(tool_wasm("busy", behaviour="slow"))
    every: list[str | Path] = ["--tools-dir", tools, "--cache-dir", cache_dir, "--tenants", tenants]
    every += ["--tool-timeout", "30"]
    service = Service.start(
        tmp_path, script, [*every, *options], {"LLAMA_AGENT_CONFIG_DIR": str(tmp_path / "config")}
    )
    _wait_ready(service.url, verify)
    return service


def _load_service(tmp_path: Path, cache_dir: Path, roots: dict[str, Path]) -> Service:
    return _small_service(tmp_path, cache_dir, roots, {"turns": []}, "--lazy-model")


async def _echo_loop(client: LspSocket, stop: asyncio.Event, answers: list[dict[str, Any]]) -> None:
    while not stop.is_set():
        answers.append(await client.call("tools/invoke", {"name": "echo", "arguments": {"value": "x"}}))
        await asyncio.sleep(0.01)


async def test_a_worker_killed_under_load_fails_only_its_own_call(
    tmp_path: Path, cache_dir: Path, roots: dict[str, Path]
) -> None:
    service = _load_service(tmp_path, cache_dir, roots)
    try:
        clients = [await LspSocket.open(service.ws_url, token) for token in (ALPHA, BETA, ALPHA, BETA)]
        for client in clients:
            await client.initialize()
        napping = asyncio.ensure_future(
            clients[0].call("tools/invoke", {"name": "nap", "arguments": {"value": "z"}})
        )
        stop = asyncio.Event()
        answers: list[list[dict[str, Any]]] = [[] for _ in clients[1:]]
        loops = [
            asyncio.ensure_future(_echo_loop(c, stop, a)) for c, a in zip(clients[1:], answers, strict=True)
        ]
        await asyncio.sleep(1.0)
        for pid in _worker_pids(service):  # every worker: the napping one, busy and idle ones
            os.kill(pid, signal.SIGKILL)
        killed = await asyncio.wait_for(napping, 20)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*loops)
        after = [
            await client.call("tools/invoke", {"name": "echo", "arguments": {"value": "after"}})
            for client in clients
        ]
    finally:
        service.stop()
    # The napping call fails, as a call whose worker died; the echo calls in flight at the kill may
    # fail the same way; every later call is served by a fresh worker.
    assert killed["result"]["isError"] is True, killed
    failed = [a for loop in answers for a in loop if "error" in a or a["result"]["isError"]]
    assert len(failed) <= len(answers), failed
    assert sum(len(loop) for loop in answers) > 3 * len(answers)
    assert all(a["result"]["content"][0]["text"] == "after" and not a["result"]["isError"] for a in after), (
        after
    )


async def test_sigterm_under_load_answers_what_was_asked_before_it(
    tmp_path: Path, cache_dir: Path, roots: dict[str, Path]
) -> None:
    service = _load_service(tmp_path, cache_dir, roots)
    try:
        clients = [await LspSocket.open(service.ws_url, token) for token in (ALPHA, BETA) * 3]
        for client in clients:
            await client.initialize()
        busy = [
            asyncio.ensure_future(c.call("tools/invoke", {"name": "busy", "arguments": {"value": "b"}}))
            for c in clients[:2]
        ]
        stop = asyncio.Event()
        answers: list[list[dict[str, Any]]] = [[] for _ in clients[2:]]
        loops = [
            asyncio.ensure_future(_echo_loop(c, stop, a)) for c, a in zip(clients[2:], answers, strict=True)
        ]
        await asyncio.sleep(0.5)
        service.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.1)
        assert httpx.get(f"{service.url}/readyz").status_code == 503
        busy_answers = await asyncio.wait_for(asyncio.gather(*busy), 20)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loops, return_exceptions=True), 20)
        for client in clients:
            await asyncio.wait_for(client.websocket.wait_closed(), 10)
        code = await asyncio.to_thread(service.process.wait, 20)
    finally:
        service.stop()
    assert code == 0
    assert all(client.websocket.close_code == 1001 for client in clients)
    # The calls running when the stop began finish (or, past the grace, end as stopped calls): each
    # is answered. Later requests are refused as "shutting down", never left unanswered.
    assert all("result" in answer for answer in busy_answers), busy_answers
    for reply in (a for loop in answers for a in loop):
        assert "result" in reply or reply["error"]["message"] == "the server is shutting down", reply


# -- TLS ----------------------------------------------------------------------------------------


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


async def test_tls(tmp_path: Path, cache_dir: Path, roots: dict[str, Path]) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(cafile=str(cert))
    tls = ("--tls-cert", cert, "--tls-key", key, "--lazy-model")
    service = _small_service(tmp_path, cache_dir, roots, {"turns": []}, *tls, verify=context)
    try:
        assert service.url.startswith("https://")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{service.url}/healthz")  # not trusted without the certificate
        client = await LspSocket.open(service.ws_url, ALPHA, ssl=context)
        assert "result" in await client.initialize()
        await client.close()
    finally:
        service.stop()


# -- bad flags ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--listen", "127.0.0.1:0"], "--listen needs --tenants FILE"),
        (["--listen", "nowhere", "--tenants", "TENANTS"], "expected HOST:PORT"),
        (["--listen", "127.0.0.1:0", "--tenants", "BAD"], "tenant[0].name"),
        (["--tenants", "TENANTS"], "are for --listen"),
        (["--listen", "127.0.0.1:0", "--tenants", "TENANTS", "--tls-cert", "TENANTS"], "go together"),
    ],
    ids=["no tenants", "bad address", "bad tenants file", "tenants without listen", "cert without key"],
)
def test_bad_flags_and_files_are_usage_errors(
    tmp_path: Path, roots: dict[str, Path], extra: list[str], said: str
) -> None:
    good, bad = tmp_path / "tenants.toml", tmp_path / "bad.toml"
    good.write_text(tenant_table("alpha", ALPHA, roots["alpha"]))
    bad.write_text(tenant_table("Not A Name", ALPHA, roots["alpha"]))
    arguments = [str(good) if a == "TENANTS" else str(bad) if a == "BAD" else a for a in extra]
    program = str(Path(__import__("sys").executable).with_name("llama-agent"))
    done = subprocess.run([program, "serve", *arguments], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and said in done.stderr, done.stderr
