"""Models by Hugging Face reference: parsing, downloading through a loopback fake hub, the cache,
errors, and a hostile hub (names that leave the cache, bodies without end, answers that change).

No test reaches the network: every fetch names the fake hub's endpoint (or a closed loopback port),
and huggingface_hub's HTTP client refuses any other host while these tests run.
"""

from __future__ import annotations

import importlib
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import constants, hf_hub_download, scan_cache_dir, set_client_factory
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import _http as hub_http
from huggingface_hub.utils._validators import validate_repo_id
from hypothesis import given
from hypothesis import strategies as st
from llama_agent.runtime.models import hub as hub_module
from llama_agent.runtime.models.backend import ModelError
from llama_agent.runtime.models.hub import HubReference, fetch_model, parse_hub_reference

from tests.fake_hub import (
    Answer,
    FakeHub,
    Rewrite,
    Served,
    bytes_on_disk,
    chain,
    endless,
    files_in,
    outside_cache,
    send_body,
    set_headers,
    watched,
)
from tests.rpc import process_rss_bytes

REPO = "unsloth/gemma-3-270m-it-GGUF"
FILE = "gemma-3-270m-it-Q4_K_M.gguf"
CONTENT = random.Random(0).randbytes(300_000)
GATED = "google/gated-GGUF"
TOKEN = "hf_fake_token"
# `huggingface_hub.utils.tqdm` is the class: the package exports it over its module.
HUB_TQDM_MODULE = importlib.import_module("huggingface_hub.utils.tqdm")
CHUNK = 64 * 1024  # the most one read from the network gives: a progress step at least this often


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


def test_the_cache_is_huggingface_hubs(hub: FakeHub, tmp_path: Path) -> None:
    """Laid out as huggingface_hub lays it out: its tools list it, its own lookup finds the file."""
    path = fetch_model(reference(f"{REPO}:sub/dir/other.gguf"), tmp_path, endpoint=hub.endpoint)

    scanned = scan_cache_dir(tmp_path / "models")
    assert scanned.warnings == []
    [repo] = scanned.repos
    [revision] = repo.revisions
    assert (repo.repo_id, revision.commit_hash, revision.refs) == (
        REPO,
        FakeHub.commit(REPO),
        frozenset({"main"}),
    )
    assert [file.file_path for file in revision.files] == [path]
    found = hf_hub_download(REPO, "sub/dir/other.gguf", cache_dir=tmp_path / "models", local_files_only=True)
    assert Path(found) == path


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


# A hostile hub. The test's tmp_path is the sandbox: the cache, and the person's config beside it.
# Whatever the hub answers, nothing may appear outside the cache, and nothing of a refused file
# is kept inside it.

GRANTS = "config/llama-agent/grants.toml"
# From a repository's blobs/, snapshots/ or .no_exist/ folder in the cache up to the sandbox.
UP = "../../../../"
BIG = 2**30  # announced for downloads stopped long before their end


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    (tmp_path / "cache").mkdir()
    (tmp_path / "config" / "llama-agent").mkdir(parents=True)
    return tmp_path


def hostile_fetch(sandbox: Path, hub: FakeHub, text: str = f"{REPO}:{FILE}", **options: object) -> str:
    """The ModelError of a fetch from `hub`, having checked that it left nothing anywhere."""
    with pytest.raises(ModelError) as raised:
        fetch_model(reference(text), sandbox / "cache", endpoint=hub.endpoint, **options)  # type: ignore[arg-type]
    assert outside_cache(sandbox) == ["config", "config/llama-agent"]
    assert not (sandbox / GRANTS).exists()
    assert files_in(sandbox / "cache") == [], "nothing of a refused file is kept"
    message = str(raised.value)
    assert text in message
    assert hub.endpoint in message
    return message


def hostile_hub(rewrite: Rewrite | None) -> FakeHub:
    return FakeHub({REPO: {FILE: CONTENT}}, rewrite=rewrite)


def gets(hub: FakeHub) -> list[Served]:
    return [served for served in hub.requests if served.method == "GET"]


def with_sandbox(values: dict[str, str], method: str | None = None) -> Callable[[Path], Rewrite]:
    """Headers whose values may name the sandbox ({sandbox}), known only once the test runs."""
    return lambda sandbox: set_headers(
        {name: value.format(sandbox=sandbox) for name, value in values.items()}, method
    )


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        pytest.param(with_sandbox({"ETag": f'"{UP}{GRANTS}"'}), "ETag", id="etag-climbs-to-the-grants-file"),
        pytest.param(with_sandbox({"ETag": f'"{{sandbox}}/{GRANTS}"'}), "ETag", id="etag-absolute"),
        pytest.param(with_sandbox({"ETag": f'W/"{UP}{GRANTS}"'}), "ETag", id="etag-weak-form"),
        pytest.param(with_sandbox({"X-Linked-Etag": f'"{UP}{GRANTS}"'}), "ETag", id="linked-etag"),
        pytest.param(with_sandbox({"ETag": f'"{"../" * 2700}{GRANTS}"'}), "ETag", id="etag-very-long"),
        pytest.param(with_sandbox({"ETag": '"' + "a" * 8000 + '"'}), "ETag", id="etag-long-hex"),
        pytest.param(with_sandbox({"ETag": '"' + "a" * 63 + '\x00"'}), None, id="etag-nul"),
        pytest.param(with_sandbox({"X-Repo-Commit": f"{UP}escape"}), "commit", id="commit-climbs"),
        pytest.param(with_sandbox({"X-Repo-Commit": "{sandbox}/escape"}), "commit", id="commit-absolute"),
        pytest.param(with_sandbox({"X-Repo-Commit": "../" * 2700}), "commit", id="commit-very-long"),
        pytest.param(with_sandbox({"X-Repo-Commit": "0" * 39 + "\x00"}), None, id="commit-nul"),
        pytest.param(with_sandbox({"X-Repo-Commit": "0" * 39 + "G"}), "commit", id="commit-not-hex"),
    ],
)
def test_names_from_the_hub_never_leave_the_cache(
    sandbox: Path, headers: Callable[[Path], Rewrite], named: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A header HTTP forbids (a NUL) fails the request, which huggingface_hub retries for 23 s.
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    with hostile_hub(headers(sandbox)) as hub:
        message = hostile_fetch(sandbox, hub)

    if named is not None:
        assert named in message
        assert "HF_ENDPOINT" in message
    assert "\x00" not in message
    assert len(message) < 1000, "a long value is cut short in the message"
    assert gets(hub) == [], "refused on the HEAD's answer, before any download"


def test_a_404_writes_nothing_whatever_commit_it_names(sandbox: Path) -> None:
    climbing = set_headers({"X-Repo-Commit": f"{UP}escape"})
    with hostile_hub(climbing) as hub:
        message = hostile_fetch(sandbox, hub, f"{REPO}:missing.gguf")

    assert "no file missing.gguf" in message


@pytest.mark.parametrize(
    ("rewrite", "said"),
    [
        pytest.param(send_body(endless()), "more than the 300000 bytes", id="endless-body"),
        pytest.param(send_body(CONTENT * 10, length=len(CONTENT) * 10), "began sending", id="longer-length"),
        pytest.param(send_body(bytes(len(CONTENT))), "do not match its ETag", id="other-bytes"),
        pytest.param(
            chain(send_body(CONTENT[::-1]), set_headers({"ETag": f'"{FakeHub.etag(CONTENT[::-1])}"'}, "GET")),
            "do not match its ETag",
            id="get-names-another-file",
        ),
        pytest.param(
            lambda served, answer: Answer(500, {}, endless()) if served.method == "GET" else answer,
            "HTTP 500",
            id="endless-error-body",
        ),
        pytest.param(set_headers({"X-Linked-Size": "-1"}, "HEAD"), "size", id="negative-size"),
        pytest.param(send_body(endless(), method="HEAD"), "size", id="no-size"),
        pytest.param(
            lambda served, answer: Answer(
                302, {**answer.headers, "Location": "file:///etc/passwd", "X-Linked-Size": str(len(CONTENT))}
            ),
            "file:///etc/passwd",
            id="location-not-http",
        ),
    ],
)
def test_a_body_unlike_its_announcement_is_refused(sandbox: Path, rewrite: Rewrite, said: str) -> None:
    with hostile_hub(rewrite) as hub, watched(lambda: bytes_on_disk(sandbox)) as disk:
        message = hostile_fetch(sandbox, hub)

    assert said in message
    assert disk[1] <= len(CONTENT), "never more on disk than the announced size"


def test_the_answer_to_the_get_names_nothing(sandbox: Path) -> None:
    """The GET's own ETag and commit are never used: the file lands where the checked HEAD says."""
    climbing = set_headers({"ETag": f'"{UP}{GRANTS}"', "X-Repo-Commit": f"{UP}escape"}, "GET")
    with hostile_hub(climbing) as hub:
        path = fetch_model(reference(f"{REPO}:{FILE}"), sandbox / "cache", endpoint=hub.endpoint)

    assert path.read_bytes() == CONTENT
    assert path.resolve().name == FakeHub.etag(CONTENT)
    assert path.parent.name == FakeHub.commit(REPO)
    assert outside_cache(sandbox) == ["config", "config/llama-agent"]


def test_a_size_over_the_ceiling_is_not_downloaded(sandbox: Path) -> None:
    with hostile_hub(set_headers({"X-Linked-Size": str(10**15)}, "HEAD")) as hub:
        message = hostile_fetch(sandbox, hub)

    assert "LLAMA_AGENT_MAX_MODEL_BYTES" in message
    assert "931322.6 GiB" in message
    assert gets(hub) == []


def test_a_file_larger_than_the_free_space_is_not_started(sandbox: Path) -> None:
    with hostile_hub(set_headers({"X-Linked-Size": str(10**15)}, "HEAD")) as hub:
        message = hostile_fetch(sandbox, hub, max_bytes=10**16)

    assert "free" in message
    assert gets(hub) == []


def test_the_ceiling_is_configurable(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA_AGENT_MAX_MODEL_BYTES", "100K")
    with hostile_hub(None) as hub:
        message = hostile_fetch(sandbox, hub)
        assert "LLAMA_AGENT_MAX_MODEL_BYTES=80G" in message
        assert gets(hub) == []

        monkeypatch.setenv("LLAMA_AGENT_MAX_MODEL_BYTES", str(len(CONTENT)))  # just enough
        path = fetch_model(reference(f"{REPO}:{FILE}"), sandbox / "cache", endpoint=hub.endpoint)
    assert path.read_bytes() == CONTENT

    monkeypatch.setenv("LLAMA_AGENT_MAX_MODEL_BYTES", "lots")
    assert fetch_model(reference(f"{REPO}:{FILE}"), sandbox / "cache") == path, "the cache needs no ceiling"
    with pytest.raises(ModelError, match="LLAMA_AGENT_MAX_MODEL_BYTES='lots' is not a size"):
        fetch_model(reference(f"{REPO}:other.gguf"), sandbox / "cache")


def test_a_file_kept_in_git_is_checked_against_its_git_object_id(sandbox: Path) -> None:
    with hostile_hub(set_headers({"ETag": f'"{FakeHub.git_etag(CONTENT)}"'})) as hub:
        path = fetch_model(reference(f"{REPO}:{FILE}"), sandbox / "cache", endpoint=hub.endpoint)
    assert path.read_bytes() == CONTENT

    wrong = FakeHub.git_etag(CONTENT[1:])
    (sandbox / "cache" / "models").rename(sandbox / "cache" / "downloaded")  # to download again
    with hostile_hub(set_headers({"ETag": f'"{wrong}"'})) as hub, pytest.raises(ModelError) as raised:
        fetch_model(reference(f"{REPO}:{FILE}"), sandbox / "cache", endpoint=hub.endpoint)
    assert f"do not match its ETag {wrong}" in str(raised.value)
    assert files_in(sandbox / "cache" / "models") == []


def test_a_cut_connection_resumes_where_it_stopped(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "_RETRY_PAUSE_SECONDS", 0.01)
    cut = 100_000

    def cut_once(served: Served, answer: Answer) -> Answer:
        if served.method == "GET" and served.range is None:
            answer.body, answer.length = CONTENT[:cut], len(CONTENT)  # then the connection closes
        return answer

    with hostile_hub(cut_once) as hub:
        path = fetch_model(reference(f"{REPO}:{FILE}"), sandbox / "cache", endpoint=hub.endpoint)

    assert path.read_bytes() == CONTENT
    assert [served.range for served in gets(hub)] == [None, f"bytes={cut}-"]


def test_memory_stays_bounded_while_an_endless_body_streams(sandbox: Path) -> None:
    announced = 96 * 2**20  # more than the memory allowed to grow: it cannot all be held
    endless_and_big = chain(set_headers({"X-Linked-Size": str(announced)}, "HEAD"), send_body(endless()))
    with (
        hostile_hub(endless_and_big) as hub,
        watched(lambda: bytes_on_disk(sandbox)) as disk,
        watched(lambda: process_rss_bytes(os.getpid())) as rss,
    ):
        message = hostile_fetch(sandbox, hub, max_bytes=128 * 2**20)

    assert "more than the 100663296 bytes it announced" in message
    assert hub.bytes_sent > announced
    assert disk[1] <= announced
    assert rss[1] - rss[0] < 64 * 2**20, f"memory grew by {(rss[1] - rss[0]) / 2**20:.0f} MiB"


@pytest.mark.parametrize("silent", [False, True], ids=["streaming", "silent"])
def test_a_cancel_stops_the_download(sandbox: Path, monkeypatch: pytest.MonkeyPatch, silent: bool) -> None:
    """Within a second, even from a server that sends nothing: the caller is let go at once, the
    connection closed at the next chunk (or read timeout), and the partial file removed."""
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 0.5)
    body = endless(pause=60.0 if silent else 0.01)  # one chunk, then (if silent) nothing more
    slow = chain(set_headers({"X-Linked-Size": str(BIG)}, "HEAD"), send_body(body))
    cancel = threading.Event()
    cache = sandbox / "cache"
    with hostile_hub(slow) as hub, ThreadPoolExecutor(1) as pool:
        fetching: Future[Path] = pool.submit(
            fetch_model, reference(f"{REPO}:{FILE}"), cache, endpoint=hub.endpoint, cancel=cancel
        )
        wait_until(lambda: bytes_on_disk(cache) > 0)
        cancel.set()
        cancelled = time.monotonic()
        with pytest.raises(ModelError) as raised:
            fetching.result(timeout=1.0)
        let_go = time.monotonic() - cancelled
        # A silent server learns of the closed connection only when it writes again.
        wait_until(lambda: files_in(cache) == [] and (silent or hub.bodies_streaming == 0))
        stopped = time.monotonic() - cancelled
        sent = hub.bytes_sent
        time.sleep(0.2)
        assert hub.bytes_sent == sent, "nothing more is read"

    assert "the download stopped before it finished" in str(raised.value)
    assert let_go < 0.5
    assert stopped < 1.0 + (0.5 if silent else 0.0), f"stopped {stopped:.2f} s after the cancel"


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_offline_and_not_cached(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE is set"):
        fetch_model(reference(f"{REPO}:{FILE}"), sandbox / "cache")


@pytest.mark.parametrize("poisoned", ["ref", "link"])
def test_the_cache_is_used_only_within_itself(
    sandbox: Path, monkeypatch: pytest.MonkeyPatch, poisoned: str
) -> None:
    """A ref or a snapshot link leading out of the cache (left by an older download) is not used."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    outside = sandbox / "escape" / FILE
    outside.parent.mkdir()
    outside.write_bytes(b"GGUF not from the hub")
    storage = sandbox / "cache" / "models" / "models--unsloth--gemma-3-270m-it-GGUF"
    commit = FakeHub.commit(REPO)
    (storage / "refs").mkdir(parents=True)
    if poisoned == "ref":  # snapshots/ + this = the file outside
        (storage / "refs" / "main").write_text(f"{UP}escape")
    else:
        (storage / "refs" / "main").write_text(commit)
        (storage / "snapshots" / commit).mkdir(parents=True)
        (storage / "snapshots" / commit / FILE).symlink_to(outside)

    with pytest.raises(ModelError, match="not in the cache yet"):
        fetch_model(reference(f"{REPO}:{FILE}"), sandbox / "cache")
