"""Models named by a Hugging Face reference, `REPO[@REV]:FILE.gguf`, downloaded once into the cache.

huggingface_hub does the download, so the cache has its layout (blobs, snapshots, refs) and its
tools (`hf cache ls`, `hf cache rm`) manage it. A reference found in the cache is used without
asking the Hub whether its revision moved: once a model is downloaded the daemon starts offline.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    FileMetadataError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils.tqdm import tqdm as hub_tqdm

from daemon.runtime.backend import ModelError

# bytes done, total bytes (None when unknown)
DownloadProgress = Callable[[int, int | None], None]

_REFERENCE = re.compile(
    r"(?P<repo>[A-Za-z0-9._-]+/[A-Za-z0-9._-]+)(?:@(?P<revision>[A-Za-z0-9._/-]+))?:(?P<filename>[^:]+)"
)
# huggingface_hub's rules for each half of a repo id (utils/_validators.py): at most 96 characters,
# starting and ending with a letter, digit or "_"; with no "--" or ".." anywhere, checked apart.
_REPO_SEGMENT = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?")
# What hf_hub_download raises; anything else (a bug, or an exception from `on_progress`) passes through.
_FAILURES = (OSError, ValueError, RuntimeError, EntryNotFoundError, httpx2.HTTPError)


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


def fetch_model(
    reference: HubReference,
    cache_dir: Path,
    *,
    on_progress: DownloadProgress | None = None,
    show_bar: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> Path:
    """The GGUF's local path: from the cache (`cache_dir / "models"`, huggingface_hub's cache layout)
    without any network request when it is already there; else downloaded with hf_hub_download,
    reporting progress to `on_progress` (and a tqdm bar on stderr when show_bar). `endpoint` None:
    huggingface_hub's own (HF_ENDPOINT).

    `on_progress` is called from the calling thread, after each chunk received and once at the
    end with done == total; never for a model found in the cache. `token` None: huggingface_hub's
    own (HF_TOKEN, or the one `hf auth login` saved). Failures raise ModelError."""
    models = cache_dir / "models"
    try:
        cached = _from_cache(reference, models)
        if cached is not None:
            return cached
        return _download(reference, models, on_progress, show_bar, endpoint, token)
    except _FAILURES as error:
        raise ModelError(_explain(error, reference, models, endpoint)) from error


def _from_cache(reference: HubReference, models: Path) -> Path | None:
    try:
        path = hf_hub_download(
            reference.repo_id,
            reference.filename,
            revision=reference.revision,
            cache_dir=models,
            local_files_only=True,
        )
    except LocalEntryNotFoundError:
        return None
    return Path(path)


def _download(
    reference: HubReference,
    models: Path,
    on_progress: DownloadProgress | None,
    show_bar: bool,
    endpoint: str | None,
    token: str | None,
) -> Path:
    report = _Reporter(on_progress)
    path = Path(
        hf_hub_download(
            reference.repo_id,
            reference.filename,
            revision=reference.revision,
            cache_dir=models,
            endpoint=endpoint,
            token=token,
            tqdm_class=_bar_class(report, show_bar, reference.filename),
        )
    )
    report.finished(path.stat().st_size)
    return path


class _Reporter:
    """Forwards progress to `on_progress`, making sure its last call says done == total."""

    def __init__(self, on_progress: DownloadProgress | None) -> None:
        self._on_progress = on_progress
        self._last: tuple[int, int | None] | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if self._on_progress is not None:
            self._last = (done, total)
            self._on_progress(done, total)

    def finished(self, size: int) -> None:
        # The Content-Length may be missing (total None), or the bar's last update not reach it.
        if self._last != (size, size):
            self(size, size)


def _bar_class(report: _Reporter, show_bar: bool, label: str) -> type[hub_tqdm]:
    """A tqdm class bound to this download: hf_hub_download takes a class and makes the bar itself.

    Built on huggingface_hub's tqdm, which still honours HF_HUB_DISABLE_PROGRESS_BARS. A disabled
    tqdm does not count (its `update` returns at once), so the bytes are counted here."""

    class Bar(hub_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # False, not tqdm's None (only on a terminal): the caller knows whether stderr is one.
            kwargs["disable"] = not show_bar
            kwargs["file"] = sys.stderr  # stdout carries the protocol
            kwargs["desc"] = label  # rather than the end of the URL
            self._done = int(kwargs.get("initial") or 0)
            self._total: int | None = kwargs.get("total")
            super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]  # unannotated upstream

        def update(self, n: float | None = 1) -> bool | None:
            shown: bool | None = super().update(n)
            self._done += int(n or 0)
            report(self._done, self._total)
            return shown

    return Bar


def _explain(error: BaseException, reference: HubReference, models: Path, endpoint: str | None) -> str:
    hub = (endpoint or constants.ENDPOINT).rstrip("/")
    return f"cannot fetch the model {reference} from {hub}: {_what_to_check(error, reference, models, hub)}"


def _what_to_check(error: BaseException, reference: HubReference, models: Path, hub: str) -> str:
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
    if isinstance(error, LocalEntryNotFoundError | httpx2.HTTPError):
        return _unreachable(error, hub)
    if isinstance(error, OSError) and error.errno is not None:
        where = error.filename or models
        return f"cannot write {where}: {error.strerror} (check free space and permissions of {models})"
    return f"{error} (check the reference and {hub})"


def _http_status(error: HfHubHTTPError) -> str:
    status = error.response.status_code
    if status in (401, 403):
        return f"access denied (HTTP {status}): set HF_TOKEN to a token that can read this repository"
    return f"the Hub answered HTTP {status}; try again later ({error.server_message or 'no detail given'})"


def _unreachable(error: BaseException, hub: str) -> str:
    """The Hub did not answer: huggingface_hub reports that as "not in the local cache", the
    actual reason being the exception it chained."""
    cause = error.__cause__ or error
    if isinstance(cause, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set and the model is not in the cache yet: unset it for the first download"
    if isinstance(cause, FileMetadataError):
        return f"{hub} does not answer as a Hugging Face Hub does (check HF_ENDPOINT and any proxy)"
    if isinstance(cause, HfHubHTTPError):
        return _http_status(cause)
    return (
        f"cannot reach {hub} ({cause or type(cause).__name__}). The network is needed only the first"
        " time, to download the model; check the connection, and HTTPS_PROXY if one is needed"
    )
