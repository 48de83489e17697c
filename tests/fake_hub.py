"""A loopback stand-in for the Hugging Face Hub's file API, as huggingface_hub 2.4.0 uses it.

`hf_hub_download` first asks `HEAD /{repo}/resolve/{revision}/{file}` for the commit the revision
points at (X-Repo-Commit), the file's ETag (its blob's name in the cache) and its size, then GETs
the same URL, with a Range only when it resumes an interrupted download. Errors carry the Hub's
X-Error-Code header, from which huggingface_hub raises its typed exceptions (a HEAD has no body
to read a message from). No X-Xet-Hash header is ever sent, so the plain HTTP download is used.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass(frozen=True)
class Served:
    method: str
    path: str


@dataclass
class _Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _not_found(code: str, message: str) -> _Answer:
    return _Answer(404, {"X-Error-Code": code, "X-Error-Message": message})


class FakeHub:
    """Serves `repos` ({repo_id: {filename: bytes}}) at revision "main" and at each repo's commit.

    A repo in `gated` ({repo_id: token}) answers 401 GatedRepo unless the request carries that
    token, as the Hub does for a gated model to a person who has not accepted its conditions.
    """

    def __init__(self, repos: Mapping[str, Mapping[str, bytes]], *, gated: Mapping[str, str] | None = None):
        self._repos = {repo: dict(files) for repo, files in repos.items()}
        self._gated = dict(gated or {})
        self._served: list[Served] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake hub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[Served]:
        with self._lock:
            return list(self._served)

    @staticmethod
    def commit(repo_id: str) -> str:
        return hashlib.sha1(repo_id.encode()).hexdigest()

    @staticmethod
    def etag(content: bytes) -> str:
        return hashlib.sha256(content).hexdigest()

    def start(self) -> FakeHub:
        self._server = _Server(self)
        # Polling for shutdown every 20 ms, not 500: stopping the hub ends each test.
        serve = functools.partial(self._server.serve_forever, poll_interval=0.02)
        self._thread = threading.Thread(target=serve, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Closes the listening socket too: a request after this is refused, as with no network."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def answer(self, method: str, target: str, headers: Mapping[str, str]) -> _Answer:
        path = urlsplit(target).path
        with self._lock:
            self._served.append(Served(method, path))
        parts = [unquote(part) for part in path.split("/")]
        # ["", owner, name, "resolve", revision, *file]: the revision is one quoted segment.
        if len(parts) < 6 or parts[0] or parts[3] != "resolve":
            return _Answer(404, {"X-Error-Message": "not an endpoint of this fake hub"})
        repo_id, revision, filename = f"{parts[1]}/{parts[2]}", parts[4], "/".join(parts[5:])
        return self._resolve(repo_id, revision, filename, headers)

    def _resolve(self, repo_id: str, revision: str, filename: str, headers: Mapping[str, str]) -> _Answer:
        token = self._gated.get(repo_id)
        if token is not None and headers.get("authorization") != f"Bearer {token}":
            return _Answer(
                401,
                {"X-Error-Code": "GatedRepo", "X-Error-Message": f"Access to model {repo_id} is restricted."},
            )
        files = self._repos.get(repo_id)
        if files is None:
            return _not_found("RepoNotFound", "Repository not found")
        commit = self.commit(repo_id)
        if revision not in ("main", commit):
            return _not_found("RevisionNotFound", "Invalid rev id")
        content = files.get(filename)
        if content is None:
            answer = _not_found("EntryNotFound", f"{filename} does not exist on main")
            # The Hub names the commit even in this 404; huggingface_hub caches the file's absence.
            answer.headers["X-Repo-Commit"] = commit
            return answer
        return _file(content, commit, headers.get("range"))


def _file(content: bytes, commit: str, range_header: str | None) -> _Answer:
    headers = {
        "X-Repo-Commit": commit,
        "ETag": f'"{FakeHub.etag(content)}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
    }
    match = _RANGE.fullmatch(range_header or "")
    if match is None:
        return _Answer(200, headers, content)
    start = int(match[1])
    end = int(match[2]) if match[2] else len(content) - 1
    if start >= len(content):
        headers["Content-Range"] = f"bytes */{len(content)}"
        return _Answer(416, headers)
    headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
    return _Answer(206, headers, content[start : end + 1])


class _Server(ThreadingHTTPServer):
    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so stopping the hub leaves no kept-alive
    # connection in huggingface_hub's shared client that could still reach it.
    protocol_version = "HTTP/1.0"

    def do_HEAD(self) -> None:
        self._reply(with_body=False)

    def do_GET(self) -> None:
        self._reply(with_body=True)

    def _reply(self, *, with_body: bool) -> None:
        assert isinstance(self.server, _Server)
        headers = {name.lower(): value for name, value in self.headers.items()}
        answer = self.server.hub.answer(self.command, self.path, headers)
        body = answer.body
        if answer.status >= 400 and with_body:
            body = json.dumps({"error": answer.headers.get("X-Error-Message", "error")}).encode()
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        # A HEAD states the size of the body a GET would carry: huggingface_hub reads it as the file's size.
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the requests are recorded on the hub instead."""
