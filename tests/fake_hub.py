"""A loopback stand-in for the Hugging Face Hub's file API, as huggingface_hub 2.4.0 uses it, that
can also be made hostile.

`HEAD /{repo}/resolve/{revision}/{file}` answers the commit the revision points at
(X-Repo-Commit), the file's ETag (its content's sha256, as for a file in LFS) and its size; a GET
of the same URL sends the file, or the part a Range asks for. Errors carry the Hub's X-Error-Code
header, from which huggingface_hub raises its typed exceptions (a HEAD has no body to read a
message from). No X-Xet-Hash header is ever sent, so the plain HTTP download is used.

A `rewrite` turns each honest answer into whatever a hostile Hub would send instead: other
headers (`set_headers`), another body, endless or slow (`send_body`, `endless`), a different
answer to the HEAD and to the GET (`method=`), or anything a test writes itself.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")

# A body made as it is sent, chunk by chunk: one that never ends, or comes slowly.
Stream = Callable[[], Iterator[bytes]]


@dataclass(frozen=True)
class Served:
    method: str
    path: str
    range: str | None = field(default=None, compare=False)


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Stream = b""
    # The Content-Length sent (a HEAD's is the file's size): the body's length when it is bytes,
    # none for a stream, unless set here.
    length: int | None = None


# Turns the honest answer to a request into the one sent.
Rewrite = Callable[[Served, Answer], Answer]


def _not_found(code: str, message: str) -> Answer:
    return Answer(404, {"X-Error-Code": code, "X-Error-Message": message})


class FakeHub:
    """Serves `repos` ({repo_id: {filename: bytes}}) at revision "main" and at each repo's commit.

    A repo in `gated` ({repo_id: token}) answers 401 GatedRepo unless the request carries that
    token, as the Hub does for a gated model to a person who has not accepted its conditions.
    `rewrite` (settable while serving) makes each answer hostile.
    """

    def __init__(
        self,
        repos: Mapping[str, Mapping[str, bytes]],
        *,
        gated: Mapping[str, str] | None = None,
        rewrite: Rewrite | None = None,
    ):
        self._repos = {repo: dict(files) for repo, files in repos.items()}
        self._gated = dict(gated or {})
        self.rewrite = rewrite
        self._served: list[Served] = []
        self._lock = threading.Lock()
        self._bytes_sent = 0
        self._bodies_streaming = 0
        self._hung_up = 0
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

    @property
    def bytes_sent(self) -> int:
        """Body bytes written to the clients so far."""
        with self._lock:
            return self._bytes_sent

    @property
    def bodies_streaming(self) -> int:
        """Bodies being sent right now (0: every download has ended or been dropped)."""
        with self._lock:
            return self._bodies_streaming

    @property
    def hung_up(self) -> int:
        """Bodies whose client closed the connection before their end."""
        with self._lock:
            return self._hung_up

    @staticmethod
    def commit(repo_id: str) -> str:
        return hashlib.sha1(repo_id.encode()).hexdigest()

    @staticmethod
    def etag(content: bytes) -> str:
        return hashlib.sha256(content).hexdigest()

    @staticmethod
    def git_etag(content: bytes) -> str:
        """The ETag of a file kept in git rather than LFS: its git object id."""
        return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()

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

    def answer(self, method: str, target: str, headers: Mapping[str, str]) -> Answer:
        path = urlsplit(target).path
        served = Served(method, path, headers.get("range"))
        with self._lock:
            self._served.append(served)
        honest = self._honest(path, headers)
        rewrite = self.rewrite
        return honest if rewrite is None else rewrite(served, honest)

    def _honest(self, path: str, headers: Mapping[str, str]) -> Answer:
        parts = [unquote(part) for part in path.split("/")]
        # ["", owner, name, "resolve", revision, *file]: the revision is one quoted segment.
        if len(parts) < 6 or parts[0] or parts[3] != "resolve":
            return Answer(404, {"X-Error-Message": "not an endpoint of this fake hub"})
        repo_id, revision, filename = f"{parts[1]}/{parts[2]}", parts[4], "/".join(parts[5:])
        return self._resolve(repo_id, revision, filename, headers)

    def _resolve(self, repo_id: str, revision: str, filename: str, headers: Mapping[str, str]) -> Answer:
        token = self._gated.get(repo_id)
        if token is not None and headers.get("authorization") != f"Bearer {token}":
            return Answer(
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

    def _sent(self, count: int) -> None:
        with self._lock:
            self._bytes_sent += count

    def _streaming(self, change: int, *, hung_up: bool = False) -> None:
        with self._lock:
            self._bodies_streaming += change
            self._hung_up += hung_up


def _file(content: bytes, commit: str, range_header: str | None) -> Answer:
    headers = {
        "X-Repo-Commit": commit,
        "ETag": f'"{FakeHub.etag(content)}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
    }
    match = _RANGE.fullmatch(range_header or "")
    if match is None:
        return Answer(200, headers, content)
    start = int(match[1])
    end = int(match[2]) if match[2] else len(content) - 1
    if start >= len(content):
        headers["Content-Range"] = f"bytes */{len(content)}"
        return Answer(416, headers)
    headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
    return Answer(206, headers, content[start : end + 1])


# Hostile behaviours


def set_headers(values: Mapping[str, str], method: str | None = None) -> Rewrite:
    """These headers (replacing any of the same name) on the answers to `method` (None: all)."""

    def rewrite(served: Served, answer: Answer) -> Answer:
        if method in (None, served.method):
            kept = {
                name: value for name, value in answer.headers.items() if name.lower() not in _lower(values)
            }
            answer.headers = {**kept, **values}
        return answer

    return rewrite


def send_body(body: bytes | Stream, *, length: int | None = None, method: str = "GET") -> Rewrite:
    """This body (and Content-Length) instead of the file's, on the answers to `method`."""

    def rewrite(served: Served, answer: Answer) -> Answer:
        if served.method == method:
            answer.body, answer.length = body, length
        return answer

    return rewrite


def chain(*rewrites: Rewrite) -> Rewrite:
    def rewrite(served: Served, answer: Answer) -> Answer:
        for step in rewrites:
            answer = step(served, answer)
        return answer

    return rewrite


def endless(chunk: int = 64 * 1024, pause: float = 0.0) -> Stream:
    """A body that never ends: `chunk` bytes, then `pause` seconds, again and again."""
    piece = bytes(range(256)) * (chunk // 256)

    def stream() -> Iterator[bytes]:
        while True:
            yield piece
            if pause:
                time.sleep(pause)

    return stream


# What a test checks after a hostile hub


def outside_cache(sandbox: Path) -> list[str]:
    """What the sandbox holds outside its cache/ folder (relative paths, sorted)."""
    return sorted(str(path.relative_to(sandbox)) for path in sandbox.rglob("*") if "cache" not in path.parts)


def files_in(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if not path.is_dir()]


@contextmanager
def watched(measure: Callable[[], int]) -> Iterator[list[int]]:
    """[the value before, the most it reached], sampled every 2 ms meanwhile."""
    seen = [measure(), measure()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.002):
            seen[1] = max(seen[1], measure())

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield seen
    finally:
        done.set()
        sampler.join()
        seen[1] = max(seen[1], measure())


def bytes_on_disk(folder: Path) -> int:
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            with suppress(FileNotFoundError):  # a partial file removed meanwhile
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _lower(names: Mapping[str, str]) -> set[str]:
    return {name.lower() for name in names}


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a client that never reads an endless body must not hold up the stop

    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so stopping the hub leaves no kept-alive
    # connection in huggingface_hub's shared client that could still reach it, and a body with
    # no Content-Length simply lasts until the connection closes.
    protocol_version = "HTTP/1.0"

    def do_HEAD(self) -> None:
        self._reply(with_body=False)

    def do_GET(self) -> None:
        self._reply(with_body=True)

    def _reply(self, *, with_body: bool) -> None:
        assert isinstance(self.server, _Server)
        hub = self.server.hub
        headers = {name.lower(): value for name, value in self.headers.items()}
        answer = hub.answer(self.command, self.path, headers)
        body = answer.body
        if answer.status >= 400 and with_body and body == b"":
            body = json.dumps({"error": answer.headers.get("X-Error-Message", "error")}).encode()
        length = (
            answer.length if answer.length is not None else len(body) if isinstance(body, bytes) else None
        )
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        # A HEAD states the size of the body a GET would carry: huggingface_hub reads it as the file's size.
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if with_body:
            self._send(hub, body)

    def _send(self, hub: FakeHub, body: bytes | Stream) -> None:
        hub._streaming(+1)
        try:
            for chunk in [body] if isinstance(body, bytes) else body():
                self.wfile.write(chunk)
                hub._sent(len(chunk))
        except (BrokenPipeError, ConnectionResetError):
            hub._streaming(-1, hung_up=True)
        else:
            hub._streaming(-1)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the requests are recorded on the hub instead."""
