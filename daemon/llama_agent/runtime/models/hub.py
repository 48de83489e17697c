"""Models named by a Hugging Face reference, `REPO[@REV]:FILE.gguf`, downloaded once into the cache.

The cache has huggingface_hub's layout (blobs/ETAG, snapshots/COMMIT/FILE linking to its blob,
refs/REVISION holding a commit), so its tools (`hf cache ls`, `hf cache rm`) manage it. A
reference found in the cache is used without asking the Hub whether its revision moved: once a
model is downloaded the daemon starts offline.

The Hub is whatever HF_ENDPOINT names, so its answers are checked before they touch the disk.
huggingface_hub's own download takes the ETag as a file name and X-Repo-Commit as a directory,
unchecked, and reads a body as long as it is sent; here huggingface_hub only asks for the file's
metadata, and this module keeps a commit only as 40 hexadecimal digits and an ETag only as a
sha256 or a git object id, streams the body into a temporary file it names itself, never more
than the announced size (itself at most LLAMA_AGENT_MAX_MODEL_BYTES), checks the bytes against
the ETag, and only then gives the file its place. A 404 writes nothing; a cancelled download
stops at its next chunk and removes its partial file. Every file comes over plain HTTP, one
stored with Xet too (its /resolve address serves it whole): hf_xet's transfer could be neither
counted nor stopped between chunks.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import wait as wait_for_futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urljoin, urlsplit

import httpx2
from huggingface_hub import constants, get_hf_file_metadata, get_session, hf_hub_url, hf_raise_for_status
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils._headers import build_hf_headers
from huggingface_hub.utils.tqdm import tqdm as hub_tqdm

from llama_agent.common.text import quoted, visible
from llama_agent.runtime.models.backend import ModelError
from llama_agent.runtime.storage.atomic import replacing, write_atomically

log = logging.getLogger(__name__)

# bytes done, total bytes (None when unknown)
DownloadProgress = Callable[[int, int | None], None]

# The largest model file downloaded, unless LLAMA_AGENT_MAX_MODEL_BYTES says otherwise.
MAX_MODEL_BYTES_VARIABLE = "LLAMA_AGENT_MAX_MODEL_BYTES"
DEFAULT_MAX_MODEL_BYTES = 64 * 2**30

_REFERENCE = re.compile(
    r"(?P<repo>[A-Za-z0-9._-]+/[A-Za-z0-9._-]+)(?:@(?P<revision>[A-Za-z0-9._/-]+))?:(?P<filename>[^:]+)"
)
# huggingface_hub's rules for each half of a repo id (utils/_validators.py): at most 96 characters,
# starting and ending with a letter, digit or "_"; with no "--" or ".." anywhere, checked apart.
_REPO_SEGMENT = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?")
# The only names the Hub's answer may give on disk: a git commit id, and a blob's ETag, which is
# its content's sha256 (a file in LFS, as GGUFs are) or its git object id (a file in git).
_COMMIT = re.compile(r"[0-9a-f]{40}")
_ETAG = re.compile(r"[0-9a-f]{64}|[0-9a-f]{40}")
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"(?P<number>[0-9]+)\s*(?P<unit>[kmgt]?)(?:i?b)?", re.IGNORECASE)
_RANGE = re.compile(r"bytes (?P<start>[0-9]+)-[0-9]+/(?P<total>[0-9]+)")
# Cut connections, resumed where they stopped (as huggingface_hub does).
_TRANSIENT = (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)
# A transfer that fails this many times in a row, with no byte received in between, is given up.
_RETRIES = 5
_RETRY_PAUSE_SECONDS = 1.0
# How soon a cancelled download lets its caller go.
_CANCEL_POLL_SECONDS = 0.05
# The most read of an error's body (for its message): a server may send an endless one.
_ERROR_BODY_BYTES = 16 * 1024
_SHOWN_CHARACTERS = 80


@dataclass(frozen=True)
class HubReference:
    repo_id: str  # "owner/name"
    filename: str  # a path inside the repository, ending in .gguf
    revision: str | None = None  # a branch, tag or commit; None: the repository's main branch

    def __str__(self) -> str:
        at = f"@{self.revision}" if self.revision is not None else ""
        return f"{self.repo_id}{at}:{self.filename}"


def parse_hub_reference(text: str) -> HubReference | None:
    """None when `text` is not of the REPO[@REV]:FILE.gguf form (then it is a local path).
    A string naming an existing local file is never a reference (caller checks that first)."""
    match = _REFERENCE.fullmatch(text)
    if match is None:
        return None
    repo_id, revision, filename = match["repo"], match["revision"], match["filename"]
    if not (_valid_repo_id(repo_id) and _valid_path(filename) and filename.lower().endswith(".gguf")):
        return None
    if revision is not None and not _valid_path(revision):
        return None
    return HubReference(repo_id, filename, revision)


def _valid_repo_id(repo_id: str) -> bool:
    """As huggingface_hub would accept it: one it rejects is not a reference, rather than a
    reference that fails later with a message about its validator."""
    if "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        return False
    return all(_REPO_SEGMENT.fullmatch(segment) for segment in repo_id.split("/"))


def _valid_path(path: str) -> bool:
    """Relative, "/"-separated, no empty, "." or ".." segment: cannot leave the cache's snapshot."""
    if "\\" in path or not path.isprintable():
        return False
    return all(segment not in ("", ".", "..") for segment in path.split("/"))


def max_model_bytes() -> int:
    """LLAMA_AGENT_MAX_MODEL_BYTES: bytes, or with K, M, G or T (powers of 1024); default 64G."""
    text = os.environ.get(MAX_MODEL_BYTES_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_MODEL_BYTES
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ModelError(
            f"{MAX_MODEL_BYTES_VARIABLE}={_shown(text)} is not a size: give a number of"
            " bytes, or one with K, M, G or T (say 80G)"
        )
    return int(match["number"]) * _UNITS[match["unit"].lower()]


class _Refused(Exception):
    """The download stopped for a reason said in full by the message (what went wrong and what
    to check). Nothing of the file is kept."""


class _UnlikeAHub(_Refused):
    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what}; that is not how a Hugging Face Hub answers, and nothing was kept"
            " (check HF_ENDPOINT and any proxy)"
        )


class _Cancelled(_Refused):
    def __init__(self) -> None:
        super().__init__(
            "the download stopped before it finished, as nothing waits for the model any more;"
            " the next run that needs it starts the download again"
        )


# What a download raises; anything else (a bug, or an exception from `on_progress`) passes through.
_FAILURES = (OSError, ValueError, RuntimeError, EntryNotFoundError, httpx2.HTTPError, _Refused)


def fetch_model(
    reference: HubReference,
    cache_dir: Path,
    *,
    on_progress: DownloadProgress | None = None,
    show_bar: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
    cancel: threading.Event | None = None,
    max_bytes: int | None = None,
) -> Path:
    """The GGUF's local path: from the cache (`cache_dir / "models"`, huggingface_hub's cache layout)
    without any network request when it is already there; else downloaded, reporting progress to
    `on_progress` (and a tqdm bar on stderr when show_bar). `endpoint` None: huggingface_hub's own
    (HF_ENDPOINT). `token` None: huggingface_hub's own (HF_TOKEN, or the one `hf auth login` saved).

    At most `max_bytes` are downloaded (None: LLAMA_AGENT_MAX_MODEL_BYTES, default 64 GiB). With
    `cancel`, the download runs on a thread of its own and setting `cancel` ends this call at once
    (ModelError), even while the server is silent; the download stops at its next chunk and
    removes its partial file.

    `on_progress` is called from the downloading thread, after each chunk received and once at
    the end with done == total; never for a model found in the cache. Failures raise ModelError."""
    models = cache_dir / "models"
    try:
        storage = models / repo_folder_name(repo_id=reference.repo_id, repo_type="model")
        cached = _from_cache(reference, storage)
        if cached is not None:
            return cached
        limit = max_model_bytes() if max_bytes is None else max_bytes  # a ModelError of its own
        download = _Download(reference, storage, limit, _Reporter(on_progress), show_bar, endpoint, token)
        return _cancellable(download.run, cancel)
    except _FAILURES as error:
        raise ModelError(_explain(error, reference, models, endpoint)) from error


def _cancellable(job: Callable[[threading.Event], Path], cancel: threading.Event | None) -> Path:
    """`job(cancel)`, on a thread of its own when there is a `cancel`: a job blocked reading a
    silent server (up to HF_HUB_DOWNLOAD_TIMEOUT) must not hold up its canceller."""
    if cancel is None:
        return job(threading.Event())
    if cancel.is_set():
        raise _Cancelled()
    outcome: Future[Path] = Future()

    def run() -> None:
        try:
            outcome.set_result(job(cancel))
        except BaseException as error:  # handed to the waiting caller
            outcome.set_exception(error)

    threading.Thread(target=run, name="hub-download", daemon=True).start()
    while not wait_for_futures([outcome], timeout=_CANCEL_POLL_SECONDS).done:
        if cancel.is_set():
            raise _Cancelled()
    return outcome.result()


# The cache


def _from_cache(reference: HubReference, storage: Path) -> Path | None:
    revision = reference.revision or constants.DEFAULT_REVISION
    commit = revision if _COMMIT.fullmatch(revision) else _read_ref(storage / "refs" / revision)
    if commit is None:
        return None
    pointer = storage / "snapshots" / commit / reference.filename
    return pointer if _in_cache(pointer, storage) else None


def _read_ref(path: Path) -> str | None:
    """The commit a revision's ref file holds, if it holds one (read bounded: it is one line)."""
    try:
        with path.open("rb") as file:
            text = file.read(2 * 40).decode("ascii", "replace").strip()
    except OSError:
        return None
    return text if _COMMIT.fullmatch(text) else None


def _in_cache(pointer: Path, storage: Path) -> bool:
    """A file, its link leading into the repository's own folder."""
    try:
        real = pointer.resolve(strict=True)
        return real.is_file() and real.is_relative_to(storage.resolve())
    except (OSError, RuntimeError):  # missing, a loop of links, not a directory on the way
        return False


def _place(pointer: Path, blob: Path) -> None:
    """snapshots/COMMIT/FILE as a relative link to blobs/ETAG, replaced atomically."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    link = pointer.with_name(f".{uuid.uuid4().hex}.link")
    os.symlink(os.path.relpath(blob, pointer.parent), link)
    try:
        os.replace(link, pointer)
    except OSError:
        link.unlink(missing_ok=True)
        raise


def _remember_revision(storage: Path, revision: str | None, commit: str) -> None:
    """refs/REVISION (a branch or tag) holding its commit, for the next start to find offline."""
    revision = revision or constants.DEFAULT_REVISION
    ref = storage / "refs" / revision
    if revision == commit or _read_ref(ref) == commit:
        return
    ref.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(ref, commit.encode("ascii"))


def _blob_complete(blob: Path, size: int) -> bool:
    """An earlier download's blob (placed only once checked): another revision's same file."""
    try:
        return blob.is_file() and not blob.is_symlink() and blob.stat().st_size == size
    except OSError:
        return False


def _make_room(folder: Path, size: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < size:
        raise _Refused(
            f"the file is {_bytes(size)} and {folder} has {_bytes(free)} free (free some space, or name"
            " another --cache-dir)"
        )


# The Hub's answer


@dataclass(frozen=True)
class _Blob:
    """The file as the Hub's HEAD answer describes it, checked: safe to use as names on disk."""

    commit: str  # 40 hexadecimal digits
    etag: str  # the content's sha256 (64 digits) or git object id (40)
    size: int  # at most the limit
    location: str  # where to GET it
    headers: dict[str, str] = field(repr=False)

    def new_digest(self) -> _Digest:
        if len(self.etag) == 64:
            return hashlib.sha256()
        # A git object id hashes a header, then the content: git hash-object.
        return hashlib.sha1(b"blob %d\0" % self.size, usedforsecurity=False)


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def _ask_hub(reference: HubReference, endpoint: str | None, token: str | None, limit: int) -> _Blob:
    """One HEAD request; its answer is checked here, and the GET's headers are never used."""
    if constants.is_offline_mode():
        raise OfflineModeIsEnabled("HF_HUB_OFFLINE is set")
    url = hf_hub_url(reference.repo_id, reference.filename, revision=reference.revision, endpoint=endpoint)
    # retry_on_errors: an unreachable Hub is asked a few times (backing off) before giving up.
    metadata = get_hf_file_metadata(url, token=token, endpoint=endpoint, retry_on_errors=True)
    commit = _checked(metadata.commit_hash, _COMMIT, "commit (X-Repo-Commit)", "a git commit id")
    etag = _checked(metadata.etag, _ETAG, "ETag", "a sha256 or a git object id")
    size = metadata.size
    if size is None or size < 0:
        raise _UnlikeAHub("it did not give the file's size (Content-Length or X-Linked-Size)")
    if size > limit:
        raise _Refused(
            f"the file is {_bytes(size)} ({size} bytes), more than the {_bytes(limit)} a model may be"
            f" (set {MAX_MODEL_BYTES_VARIABLE} to allow more, say {MAX_MODEL_BYTES_VARIABLE}=80G)"
        )
    # As huggingface_hub does: a Xet file is fetched from its /resolve address, any other from
    # where the HEAD was sent (a CDN), and the token goes only to the Hub's own origin.
    location = url if metadata.xet_file_data is not None else urljoin(url, metadata.location)
    if urlsplit(location).scheme not in ("http", "https"):
        raise _UnlikeAHub(f"it sends the file from {_shown(location)}")
    headers = build_hf_headers(token=token)
    headers["Accept-Encoding"] = "identity"  # the bytes as they are stored, to count and hash
    if _origin(location) != _origin(url):
        headers.pop("authorization", None)
    return _Blob(commit, etag, size, location, headers)


def _checked(value: str | None, form: re.Pattern[str], what: str, expected: str) -> str:
    if value is None:
        raise _UnlikeAHub(f"its answer has no {what}")
    if not form.fullmatch(value):
        raise _UnlikeAHub(f"its {what} {_shown(value)} is not {expected} in hexadecimal")
    return value


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


# The download


class _Download:
    """HEAD, then the body streamed into a private temporary file in blobs/, checked, then placed."""

    def __init__(
        self,
        reference: HubReference,
        storage: Path,
        limit: int,
        report: _Reporter,
        show_bar: bool,
        endpoint: str | None,
        token: str | None,
    ) -> None:
        self._reference = reference
        self._storage = storage
        self._limit = limit
        self._report = report
        self._show_bar = show_bar
        self._endpoint = endpoint
        self._token = token

    def run(self, stop: threading.Event) -> Path:
        blob = _ask_hub(self._reference, self._endpoint, self._token, self._limit)
        pointer = self._storage / "snapshots" / blob.commit / self._reference.filename
        if not _in_cache(pointer, self._storage):
            blob_path = self._storage / "blobs" / blob.etag
            if not _blob_complete(blob_path, blob.size):
                self._receive(blob, blob_path, stop)
            _place(pointer, blob_path)
        _remember_revision(self._storage, self._reference.revision, blob.commit)
        self._report.finished(blob.size)
        return pointer

    def _receive(self, blob: _Blob, blob_path: Path, stop: threading.Event) -> None:
        blob_path.parent.mkdir(parents=True, exist_ok=True)
        _make_room(blob_path.parent, blob.size)
        # Staged beside the blob, created exclusively under a name made here (nothing the server
        # sent names a file), and removed unless the transfer ends with the bytes the ETag names.
        with replacing(blob_path) as file, self._bar(blob.size) as bar:
            _Transfer(blob, file, self._progress(blob.size, bar), stop).run()

    @contextmanager
    def _bar(self, size: int) -> Iterator[hub_tqdm]:
        # huggingface_hub's tqdm, which still honours HF_HUB_DISABLE_PROGRESS_BARS; on stderr, as
        # stdout carries the protocol; not shown unless asked (the caller knows whether stderr is
        # a terminal).
        with hub_tqdm(  # type: ignore[no-untyped-call]  # unannotated upstream
            total=size,
            unit="B",
            unit_scale=True,
            desc=self._reference.filename,
            file=sys.stderr,
            disable=not self._show_bar,
            name="huggingface_hub.http_get",
        ) as bar:
            yield bar

    def _progress(self, size: int, bar: hub_tqdm) -> Callable[[int], None]:
        def progress(done: int) -> None:
            bar.update(done - bar.n)
            self._report(done, size)

        return progress


class _Transfer:
    """The body into `file`: never more than the announced size, resumed after a dropped
    connection, and checked against the ETag at the end."""

    def __init__(
        self, blob: _Blob, file: BinaryIO, progress: Callable[[int], None], stop: threading.Event
    ) -> None:
        self._blob = blob
        self._file = file
        self._progress = progress
        self._stop = stop
        self._digest = blob.new_digest()
        self._received = 0

    def run(self) -> None:
        failures = 0
        while True:
            before = self._received
            problem: Exception
            try:
                self._attempt()
            except _TRANSIENT as error:
                problem = error
            else:
                if self._received == self._blob.size:
                    break
                problem = _UnlikeAHub(f"the body ended after {self._received} of its {self._blob.size} bytes")
            failures = 0 if self._received > before else failures + 1
            if failures >= _RETRIES:
                raise problem
            log.warning(
                "the download of %s was cut (%s); resuming", _shown(self._blob.location), _said(problem)
            )
            if self._stop.wait(_RETRY_PAUSE_SECONDS):
                raise _Cancelled()
        if self._digest.hexdigest() != self._blob.etag:
            raise _UnlikeAHub(f"the {self._blob.size} bytes received do not match its ETag {self._blob.etag}")

    def _attempt(self) -> None:
        headers = dict(self._blob.headers)
        if self._received:
            headers["Range"] = f"bytes={self._received}-"
        timeout = constants.HF_HUB_DOWNLOAD_TIMEOUT
        with get_session().stream("GET", self._blob.location, headers=headers, timeout=timeout) as response:
            self._accept(response)
            # Raw: no decoding, so a chunk is one read from the network (at most 64 KiB).
            for chunk in response.iter_raw():
                self._take(chunk)

    def _accept(self, response: httpx2.Response) -> None:
        """A 200 (the whole file) or a 206 (the rest of it), of the announced length."""
        if response.status_code >= 400:
            _raise_for_status(response)
        if response.status_code == 200:
            if self._received:  # the server ignored the Range: start again
                self._restart()
        elif response.status_code != 206 or not self._received or not self._resumes(response):
            raise _UnlikeAHub(f"it answered HTTP {response.status_code} to the download")
        length = response.headers.get("Content-Length")
        left = self._blob.size - self._received
        if length is not None and length != str(left):
            raise _UnlikeAHub(f"it announced {self._blob.size} bytes, then began sending {_shown(length)}")

    def _resumes(self, response: httpx2.Response) -> bool:
        match = _RANGE.fullmatch(response.headers.get("Content-Range", ""))
        return match is not None and (int(match["start"]), int(match["total"])) == (
            self._received,
            self._blob.size,
        )

    def _restart(self) -> None:
        self._file.seek(0)
        self._file.truncate()
        self._digest = self._blob.new_digest()
        self._received = 0
        self._progress(0)

    def _take(self, chunk: bytes) -> None:
        if self._stop.is_set():
            raise _Cancelled()
        if len(chunk) > self._blob.size - self._received:
            raise _UnlikeAHub(f"it sent more than the {self._blob.size} bytes it announced")
        self._file.write(chunk)
        self._digest.update(chunk)
        self._received += len(chunk)
        self._progress(self._received)


def _raise_for_status(response: httpx2.Response) -> None:
    """huggingface_hub's typed error for this answer, having read at most 16 KiB of its body:
    hf_raise_for_status reads a streamed body whole, and a server may send an endless one."""
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk[: _ERROR_BODY_BYTES - len(body)]
        if len(body) >= _ERROR_BODY_BYTES:
            break
    framing = ("content-encoding", "content-length", "transfer-encoding")
    headers = [(name, value) for name, value in response.headers.multi_items() if name.lower() not in framing]
    read = httpx2.Response(
        response.status_code, headers=headers, content=bytes(body), request=response.request
    )
    hf_raise_for_status(read)


class _Reporter:
    """Forwards progress to `on_progress`, making sure its last call says done == total."""

    def __init__(self, on_progress: DownloadProgress | None) -> None:
        self._on_progress = on_progress
        self._last: tuple[int, int | None] | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if self._on_progress is not None and (done, total) != self._last:
            self._last = (done, total)
            self._on_progress(done, total)

    def finished(self, size: int) -> None:
        self(size, size)


# Errors


def _explain(error: BaseException, reference: HubReference, models: Path, endpoint: str | None) -> str:
    hub = (endpoint or constants.ENDPOINT).rstrip("/")
    return f"cannot fetch the model {reference} from {hub}: {_what_to_check(error, reference, models, hub)}"


def _what_to_check(error: BaseException, reference: HubReference, models: Path, hub: str) -> str:
    if isinstance(error, _Refused):
        return str(error)
    if isinstance(error, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set and the model is not in the cache yet: unset it for the first download"
    if isinstance(error, GatedRepoError):
        return (
            f"the repository is gated: accept its conditions at {hub}/{reference.repo_id} and set HF_TOKEN"
            " to a token of that account"
        )
    if isinstance(error, RepositoryNotFoundError):
        return (
            f"no repository {reference.repo_id} (check the owner/name before the ':'); if it is private,"
            " set HF_TOKEN to a token that can read it"
        )
    if isinstance(error, RevisionNotFoundError):
        return f"the repository has no revision {reference.revision} (check the part after '@')"
    if isinstance(error, RemoteEntryNotFoundError):
        return (
            f"the repository has no file {reference.filename} (check the name after ':' against the"
            f" repository's files at {hub}/{reference.repo_id}/tree/{reference.revision or 'main'})"
        )
    if isinstance(error, HfHubHTTPError):
        return _http_status(error)
    if isinstance(error, httpx2.HTTPError):
        return _unreachable(error, hub)
    if isinstance(error, OSError) and error.errno is not None:
        where = error.filename or models
        return f"cannot write {where}: {error.strerror} (check free space and permissions of {models})"
    return f"{_said(error)} (check the reference and {hub})"


def _http_status(error: HfHubHTTPError) -> str:
    status = error.response.status_code
    if status in (401, 403):
        return f"access denied (HTTP {status}): set HF_TOKEN to a token that can read this repository"
    detail = _shown(error.server_message) if error.server_message else "no detail given"
    return f"the Hub answered HTTP {status}; try again later ({detail})"


def _unreachable(error: BaseException, hub: str) -> str:
    return (
        f"cannot reach {hub} ({_said(error)}). The network is needed only"
        " the first time, to download the model; check the connection, and HTTPS_PROXY if one is needed"
    )


def _shown(text: str) -> str:
    """A string from the server, as a person may read it: quoted, visible, and not too long."""
    return quoted(text[:_SHOWN_CHARACTERS]) + ("…" if len(text) > _SHOWN_CHARACTERS else "")


def _said(error: BaseException) -> str:
    """An error's own text, which may repeat what the server sent: visible, and not too long."""
    text = str(error) or type(error).__name__
    return visible(text[: 4 * _SHOWN_CHARACTERS]) + ("…" if len(text) > 4 * _SHOWN_CHARACTERS else "")


def _bytes(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"
