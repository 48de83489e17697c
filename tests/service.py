"""The network service for tests: `python -m tests.service SCRIPT.json [serve options]` runs the real
`serve --listen` with a scripted model, and `Service` starts one as a subprocess and learns its port
from its log; `LspSocket` is a small JSON-RPC client over a WebSocket on `/lsp`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_agent.cli import parse_command_line
from llama_agent.cli.logs import configure_logging
from llama_agent.cli.serve import serve_on_network
from llama_agent.config import REPO_ROOT
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.scripted_model import ScriptedModel

SERVING = re.compile(r"serving \d+ tenant\(s\) on (https?)://([^:\s]+):(\d+)")


def main(argv: Sequence[str] | None = None) -> int:
    script, *options = sys.argv[1:] if argv is None else argv
    config, args = parse_command_line(["serve", *options])
    configure_logging(args.verbose, args.log_file)
    return serve_on_network(config, args, ScriptedModel.from_file(Path(script)).loader())


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tenant_table(name: str, token: str | None, root: Path, **extra: Any) -> str:
    lines = ["[[tenant]]", f'name = "{name}"', f'workspace_root = "{root}"']
    if token is not None:
        lines.append(f'token_sha256 = "{token_sha256(token)}"')
    for key, value in extra.items():
        if key != "limits":
            lines.append(f"{key} = {json.dumps(value)}")
    if "limits" in extra:
        lines.append("[tenant.limits]")
        lines += [f"{key} = {value}" for key, value in extra["limits"].items()]
    return "\n".join(lines) + "\n"


class Service:
    """A running `serve --listen 127.0.0.1:0` subprocess."""

    def __init__(
        self, process: subprocess.Popen[bytes], scheme: str, host: str, port: int, log: Path
    ) -> None:
        self.process = process
        self.scheme, self.host, self.port = scheme, host, port
        self.log = log

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.scheme == 'https' else 'ws'}://{self.host}:{self.port}/lsp"

    @classmethod
    def start(
        cls, directory: Path, script: dict[str, Any], options: Sequence[str | Path], env: dict[str, str]
    ) -> Service:
        directory.mkdir(parents=True, exist_ok=True)
        script_file = directory / "script.json"
        script_file.write_text(json.dumps(script))
        log = directory / "service.log"
        command = [sys.executable, "-m", "tests.service", str(script_file), "--listen", "127.0.0.1:0"]
        command += [str(option) for option in options]
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = SERVING.search(log.read_text(errors="replace"))
            if found:
                return cls(process, found.group(1), found.group(2), int(found.group(3)), log)
            if process.poll() is not None:
                raise RuntimeError(f"the service ended ({process.returncode}):\n{log.read_text()}")
            time.sleep(0.05)
        process.kill()
        raise RuntimeError(f"the service did not start:\n{log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class LspSocket:
    """JSON-RPC over a WebSocket: requests by id, notifications kept, the server's requests answered
    with null."""

    def __init__(self, websocket: ClientConnection) -> None:
        self.websocket = websocket
        self.notifications: list[dict[str, Any]] = []
        self.answers: dict[Any, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._arrived = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, token: str | None, **options: Any) -> LspSocket:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return cls(await connect(url, additional_headers=headers, **options))

    async def _read(self) -> None:
        # The server may end the connection without a close frame (killed, stopping): reading ends.
        with contextlib.suppress(ConnectionClosed):
            await self._read_frames()

    async def _read_frames(self) -> None:
        async for frame in self.websocket:
            message = json.loads(frame)
            if "method" in message and "id" in message:
                await self.websocket.send(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": None}))
                continue
            async with self._arrived:
                if "method" in message:
                    self.notifications.append(message)
                else:
                    self.answers[message.get("id")] = message
                self._arrived.notify_all()

    async def send(self, message: dict[str, Any]) -> None:
        await self.websocket.send(json.dumps(message))

    async def notify(self, method: str, params: Any = None) -> None:
        await self.send(
            {"jsonrpc": "2.0", "method": method, **({"params": params} if params is not None else {})}
        )

    async def call(self, method: str, params: Any = None, request_id: Any = None) -> dict[str, Any]:
        """The whole answer (with `result` or `error`) to a request."""
        request_id = next(self._ids) if request_id is None else request_id
        await self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}})
        return await self.answer(request_id)

    async def answer(self, request_id: Any, timeout: float = 30) -> dict[str, Any]:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: request_id in self.answers)
            return self.answers.pop(request_id)

    async def result(self, method: str, params: Any = None) -> Any:
        answer = await self.call(method, params)
        assert "result" in answer, answer
        return answer["result"]

    async def initialize(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = await self.call("initialize", {"processId": None, "capabilities": {}, **(params or {})})
        if "result" in answer:
            await self.notify("initialized", {})
        return answer

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.websocket.close()


if __name__ == "__main__":
    sys.exit(main())
