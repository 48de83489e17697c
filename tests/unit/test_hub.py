"""Models by Hugging Face reference: parsing, downloading through a loopback fake hub, the cache, errors.

No test reaches the network: every fetch names the fake hub's endpoint (or a closed loopback port),
and huggingface_hub's HTTP client refuses any other host while these tests run.
"""

from __future__ import annotations

import importlib
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import constants, set_client_factory
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import _http as hub_http
from huggingface_hub.utils._validators import validate_repo_id
from hypothesis import given
from hypothesis import strategies as st

from daemon.runtime.backend import ModelError
from daemon.runtime.hub import HubReference, fetch_model, parse_hub_reference
from tests.fake_hub import FakeHub, Served

REPO = "unsloth/gemma-3-270m-it-GGUF"
FILE = "gemma-3-270m-it-Q4_K_M.gguf"
CONTENT = random.Random(0).randbytes(300_000)
GATED = "google/gated-GGUF"
TOKEN = "hf_fake_token"
# `huggingface_hub.utils.tqdm` is the class: the package exports it over its module.
HUB_TQDM_MODULE = importlib.import_module("huggingface_hub.utils.tqdm")
CHUNK = 64 * 1024  # huggingface_hub reads 10 MiB at a time: this file would be a single step


def _loopback_only(request: httpx2.Request) -> None:
    if request.url.host != "127.0.0.1":
        raise AssertionError(f"a test reached for the network: {request.method} {request.url}")


def _guarded_client() -> httpx2.Client:
    return httpx2.Client(
        event_hooks={"request": [hub_http.hf_request_event_hook, _loopback_only]},
        follow_redirects=True,
        timeout=None,
    )


@pytest.fixture(autouse=True)
def isolated_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """huggingface_hub as a fresh install would run it, whatever the environment of the test run:
    online, no saved token sent, progress bars allowed, telemetry off, loopback only."""
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # for anything reading it late
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)
    monkeypatch.setattr(HUB_TQDM_MODULE, "HF_HUB_DISABLE_PROGRESS_BARS", None)
    set_client_factory(_guarded_client)
    yield
    set_client_factory(hub_http.default_client_factory)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    repos = {REPO: {FILE: CONTENT, "sub/dir/other.gguf": b"GGUF" + bytes(1000)}, GATED: {FILE: CONTENT}}
    with FakeHub(repos, gated={GATED: TOKEN}) as fake:
        yield fake


def closed_port_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def reference(text: str) -> HubReference:
    parsed = parse_hub_reference(text)
    assert parsed is not None, text
    return parsed


# Parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{REPO}:{FILE}", HubReference(REPO, FILE)),
        ("owner/name@main:model.gguf", HubReference("owner/name", "model.gguf", "main")),
        ("owner/name@v1.2:model.gguf", HubReference("owner/name", "model.gguf", "v1.2")),
        ("owner/name@refs/pr/1:model.gguf", HubReference("owner/name", "model.gguf", "refs/pr/1")),
        ("owner/name:sub/dir/Model-Q8_0.GGUF", HubReference("owner/name", "sub/dir/Model-Q8_0.GGUF")),
        ("Org_1/my.repo-x:a b.gguf", HubReference("Org_1/my.repo-x", "a b.gguf")),
    ],
)
def test_parse_references(text: str, expected: HubReference) -> None:
    assert parse_hub_reference(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text",
    [
        "models/x.gguf",  # a relative path
        "/abs/x.gguf",
        "x.gguf",
        "./owner/name:x.gguf",
        "owner/name:model.bin",  # not a GGUF
        "owner/name:model.gguf.part",
        "a/b/c:model.gguf",  # three segments
        "name:model.gguf",  # one segment
        "owner/name:../model.gguf",
        "owner/name:sub/../../model.gguf",
        "owner/name:/abs/model.gguf",
        "owner/name:sub//model.gguf",
        "owner/name:sub\\model.gguf",
        "owner/..:model.gguf",
        "own--er/name:model.gguf",  # huggingface_hub forbids "--" and ".." in repo ids
        "-owner/name:model.gguf",
        "owner/.name:model.gguf",
        "owner/name.git:model.gguf",
        "owner/name@:model.gguf",
        "owner/name@../x:model.gguf",
        "owner/name@a b:model.gguf",
        "owner/name:",
        "owner/name:a:b.gguf",
        "owner/na me:model.gguf",
        "C:\\models\\x.gguf",
        "https://huggingface.co/owner/name:model.gguf",
        "",
    ],
)
def test_not_references(text: str) -> None:
    assert parse_hub_reference(text) is None


@given(st.text(alphabet="ab_-.", min_size=1, max_size=6), st.text(alphabet="ab_-.", min_size=1, max_size=6))
def test_repo_ids_as_huggingface_hub_accepts_them(owner: str, name: str) -> None:
    repo_id = f"{owner}/{name}"
    try:
        validate_repo_id(repo_id)
        valid = True
    except HFValidationError:
        valid = False
    assert (parse_hub_reference(f"{repo_id}:model.gguf") is not None) == valid


# Downloading and the cache


def test_download_then_cache_without_requests(hub: FakeHub, tmp_path: Path) -> None:
    progress: list[tuple[int, int | None]] = []
    path = fetch_model(
        reference(f"{REPO}:{FILE}"),
        tmp_path,
        on_progress=lambda *step: progress.append(step),
        endpoint=hub.endpoint,
    )

    assert path.read_bytes() == CONTENT
    assert path.is_relative_to(tmp_path / "models")
    assert path.name == FILE
    resolve = f"/{REPO}/resolve/main/{FILE}"
    assert hub.requests == [Served("HEAD", resolve), Served("GET", resolve)]

    done = [step[0] for step in progress]
    assert len(progress) >= len(CONTENT) // CHUNK
    assert done == sorted(set(done)), "strictly increasing"
    assert {step[1] for step in progress} == {len(CONTENT)}
    assert progress[-1] == (len(CONTENT), len(CONTENT))

    again: list[tuple[int, int | None]] = []
    assert fetch_model(reference(f"{REPO}:{FILE}"), tmp_path, on_progress=lambda *s: again.append(s)) == path
    assert len(hub.requests) == 2, "the cache answers without asking the hub"
    assert again == []

    hub.stop()
    assert fetch_model(reference(f"{REPO}:{FILE}"), tmp_path, endpoint=closed_port_endpoint()) == path


def test_nested_file_and_pinned_commit(hub: FakeHub, tmp_path: Path) -> None:
    commit = FakeHub.commit(REPO)
    pinned = reference(f"{REPO}@{commit}:sub/dir/other.gguf")
    path = fetch_model(pinned, tmp_path, endpoint=hub.endpoint)

    assert path.read_bytes().startswith(b"GGUF")
    assert path.parent.name == "dir"
    assert hub.requests == [
        Served(method, f"/{REPO}/resolve/{commit}/sub/dir/other.gguf") for method in ("HEAD", "GET")
    ]
    hub.stop()
    assert fetch_model(pinned, tmp_path, endpoint=closed_port_endpoint()) == path


def test_revisions_share_the_blob(hub: FakeHub, tmp_path: Path) -> None:
    first = fetch_model(reference(f"{REPO}:{FILE}"), tmp_path, endpoint=hub.endpoint)
    second = fetch_model(reference(f"{REPO}@{FakeHub.commit(REPO)}:{FILE}"), tmp_path, endpoint=hub.endpoint)

    assert first == second, "main and its commit are one snapshot"
    assert [served.method for served in hub.requests] == ["HEAD", "GET"]


def test_bar_on_stderr_only(hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fetch_model(reference(f"{REPO}:{FILE}"), tmp_path, show_bar=True, endpoint=hub.endpoint)

    out, err = capsys.readouterr()
    assert out == ""
    assert "100%" in err


def test_no_bar_unless_asked(hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fetch_model(reference(f"{REPO}:{FILE}"), tmp_path, endpoint=hub.endpoint)

    assert capsys.readouterr() == ("", "")


def test_gated_repository_with_a_token(hub: FakeHub, tmp_path: Path) -> None:
    path = fetch_model(reference(f"{GATED}:{FILE}"), tmp_path, endpoint=hub.endpoint, token=TOKEN)

    assert path.read_bytes() == CONTENT


# Failures


def fetch_error(text: str, tmp_path: Path, endpoint: str, token: str | None = None) -> str:
    with pytest.raises(ModelError) as raised:
        fetch_model(reference(text), tmp_path, endpoint=endpoint, token=token)
    message = str(raised.value)
    assert text in message
    assert endpoint in message
    return message


def test_unknown_repository(hub: FakeHub, tmp_path: Path) -> None:
    message = fetch_error(f"nobody/nothing:{FILE}", tmp_path, hub.endpoint)

    assert "no repository nobody/nothing" in message
    assert "HF_TOKEN" in message


def test_unknown_file(hub: FakeHub, tmp_path: Path) -> None:
    message = fetch_error(f"{REPO}:missing.gguf", tmp_path, hub.endpoint)

    assert "no file missing.gguf" in message


def test_unknown_revision(hub: FakeHub, tmp_path: Path) -> None:
    message = fetch_error(f"{REPO}@v9:{FILE}", tmp_path, hub.endpoint)

    assert "no revision v9" in message


@pytest.mark.parametrize("token", [None, "hf_wrong"])
def test_gated_repository(hub: FakeHub, tmp_path: Path, token: str | None) -> None:
    message = fetch_error(f"{GATED}:{FILE}", tmp_path, hub.endpoint, token)

    assert "gated" in message
    assert "HF_TOKEN" in message


def test_connection_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub retries an unreachable Hub five times, backing off for 23 s in all (2.4.0).
    naps: list[float] = []
    monkeypatch.setattr(time, "sleep", naps.append)
    endpoint = closed_port_endpoint()
    message = fetch_error(f"{REPO}:{FILE}", tmp_path, endpoint)

    assert "cannot reach" in message
    assert "only the first time" in message
    assert naps, "huggingface_hub retried before giving up"


def test_disk_error(hub: FakeHub, tmp_path: Path) -> None:
    not_a_directory = tmp_path / "cache"
    not_a_directory.write_text("a file where the cache should be")
    with pytest.raises(ModelError) as raised:
        fetch_model(reference(f"{REPO}:{FILE}"), not_a_directory, endpoint=hub.endpoint)

    message = str(raised.value)
    assert f"{REPO}:{FILE}" in message
    assert "cannot write" in message
    assert "free space and permissions" in message
