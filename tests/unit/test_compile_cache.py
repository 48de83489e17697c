"""The signed compile cache: only entries the daemon signed are ever run."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from llama_agent.runtime.tools.limits import Limits
from llama_agent.runtime.tools.policy import DirGrant, PolicyError, Protected
from llama_agent.runtime.wasm.executor import Sandbox
from llama_agent.runtime.wasm.host import WasmHost
from llama_agent.runtime.wasm.messages import CompiledTool, Done, Failed, InvokeJob
from llama_agent.runtime.wasm.workers import WorkerPool

from tests.unsafe_files import (
    FORGED_ECHO_ANSWER,
    OTHER_UID,
    echo_wasm,
    forged_cache,
    give_to_another_user,
    make_device,
    tree,
)
from tests.wat_tools import tool_wasm


def host(tmp_path: Path) -> WasmHost:
    return WasmHost(tmp_path / "cache")


def entries(tmp_path: Path) -> dict[str, Path]:
    return {path.name: path for path in (tmp_path / "cache" / "components").iterdir()}


def test_an_entry_is_signed_and_reused(tmp_path: Path) -> None:
    wasm = tool_wasm("signed")
    first = host(tmp_path).load_bytes(wasm, Path("signed.wasm"))
    second = host(tmp_path).load_bytes(wasm, Path("signed.wasm"))
    assert (first.from_cache, second.from_cache) == (False, True)
    names = sorted(entries(tmp_path))
    assert len(names) == 2 and names[1] == names[0] + ".mac"
    key = tmp_path / "cache" / "signing.key"
    assert len(key.read_bytes()) == 32
    assert key.stat().st_mode & 0o777 == 0o600


def test_another_tools_entry_copied_over_is_not_run(tmp_path: Path) -> None:
    """The attack: make echo.wasm run other compiled code by rewriting its cache entry."""
    first = host(tmp_path)
    echo = first.load_bytes(tool_wasm("echo"), Path("echo.wasm"))
    other = first.load_bytes(tool_wasm("other", behaviour="version"), Path("other.wasm"))
    shutil.copyfile(other.artifact.path, echo.artifact.path)
    shutil.copyfile(Path(f"{other.artifact.path}.mac"), Path(f"{echo.artifact.path}.mac"))
    again = host(tmp_path)
    reloaded = again.load_bytes(tool_wasm("echo"), Path("echo.wasm"))
    assert reloaded.from_cache is False  # refused, compiled again
    assert reloaded.metadata.name == "echo"
    assert again.invoke(reloaded, {"value": "hi"}).text == "hi"


@pytest.mark.parametrize("tamper", ["flip_a_byte", "drop_the_signature", "truncate", "other_key"])
def test_an_entry_that_does_not_verify_is_compiled_again(tmp_path: Path, tamper: str) -> None:
    wasm = tool_wasm("tampered")
    loaded = host(tmp_path).load_bytes(wasm, Path("tampered.wasm"))
    entry, mac = loaded.artifact.path, Path(f"{loaded.artifact.path}.mac")
    if tamper == "flip_a_byte":
        data = bytearray(entry.read_bytes())
        data[len(data) // 2] ^= 0xFF
        entry.write_bytes(bytes(data))
    elif tamper == "drop_the_signature":
        mac.unlink()
    elif tamper == "truncate":
        entry.write_bytes(entry.read_bytes()[:100])
    else:  # signed under another key
        (tmp_path / "cache" / "signing.key").unlink()
    again = host(tmp_path).load_bytes(wasm, Path("tampered.wasm"))
    assert again.from_cache is False
    assert again.metadata.name == "tampered"


def test_a_worker_refuses_an_entry_changed_after_it_was_verified(tmp_path: Path) -> None:
    loaded = host(tmp_path).load_bytes(tool_wasm("swapped"), Path("swapped.wasm"))
    pool = WorkerPool(1)
    tool = CompiledTool(str(loaded.artifact.path), loaded.artifact.sha256, loaded.contract)
    job = InvokeJob(tool, Sandbox(Limits()), {"value": "x"})
    done = pool.run(job, 5)
    assert isinstance(done, Done) and done.outcome.text == "x"
    swapped = replace(tool, digest="0" * 64)  # what a file swapped in after the check has
    changed = pool.run(replace(job, tool=swapped), 5)
    assert isinstance(changed, Failed)
    assert "changed after it was verified" in changed.error
    pool.close()


def test_nothing_in_or_above_the_cache_is_granted_for_writing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "components").mkdir(parents=True)
    protected = Protected.for_daemon([tmp_path / "tools"], cache)
    for granted in (cache, cache / "components", tmp_path):
        with pytest.raises(PolicyError, match="would let the tool rewrite"):
            protected.check(DirGrant(granted, "/data", "rw"), "test.policy.toml")
        protected.check(DirGrant(granted, "/data", "ro"), "test.policy.toml")  # reading signs nothing


# -- a cache someone else could have written ----------------------------------------------------


def test_a_forged_entry_runs_when_its_cache_is_trusted(tmp_path: Path) -> None:
    """The control for the tests below: this forged cache is an attack when it is believed."""
    forged_cache(tmp_path / "cache")
    believer = host(tmp_path)
    loaded = believer.load_bytes(echo_wasm(), Path("echo.wasm"))
    assert loaded.from_cache is True
    assert believer.invoke(loaded, {"value": "hi"}).text == FORGED_ECHO_ANSWER
    believer.close()


def make_unsafe(cache: Path, case: str, elsewhere: Path) -> None:
    key, components = cache / "signing.key", cache / "components"
    if case == "cache directory of another user":
        give_to_another_user(cache, components, key, *components.iterdir())
    elif case == "cache directory writable by others":
        cache.chmod(0o777)
    elif case == "components directory of another user":
        give_to_another_user(components)
    elif case == "components directory writable by others":
        components.chmod(0o777)
    elif case == "key of another user":
        give_to_another_user(key)
    elif case == "key writable by others":
        key.chmod(0o666)
    elif case == "key a link":  # to a key a tool could rewrite, in a workspace
        key.rename(elsewhere / "signing.key")
        key.symlink_to(elsewhere / "signing.key")
    elif case == "key hard-linked":
        os.link(key, elsewhere / "signing.key")
    elif case == "components directory a link":
        components.rename(elsewhere / "components")
        components.symlink_to(elsewhere / "components")
    elif case == "cache directory a link":
        cache.rename(elsewhere / "cache")
        cache.symlink_to(elsewhere / "cache")
    elif case == "cache below a directory others may write":
        cache.parent.chmod(0o777)
    else:
        raise AssertionError(case)


UNSAFE = {
    "cache directory of another user": f"belongs to another user (uid {OTHER_UID})",
    "cache directory writable by others": "is writable by others (mode 777)",
    "components directory of another user": f"belongs to another user (uid {OTHER_UID})",
    "components directory writable by others": "is writable by others (mode 777)",
    "key of another user": f"belongs to another user (uid {OTHER_UID})",
    "key writable by others": "is writable by others (mode 666)",
    "key a link": "is a symbolic link",
    "key hard-linked": "has 2 hard links",
    "components directory a link": "is a symbolic link (to {elsewhere}/components)",
    "cache directory a link": (
        "Set --cache-dir (or LLAMA_AGENT_CACHE_DIR) to the directory itself: {elsewhere}/cache"
    ),
    "cache below a directory others may write": "on the way to",
}


@pytest.mark.parametrize("case", UNSAFE)
def test_a_cache_someone_else_could_write_is_neither_used_nor_written(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Its key could sign anything as any tool: nothing in it runs, and the daemon serves on from
    a private directory of its own, saying what is wrong."""
    (tmp_path / "parent").mkdir()
    (tmp_path / "elsewhere").mkdir()
    cache = tmp_path / "parent" / "cache"
    forged_cache(cache)
    make_unsafe(cache, case, tmp_path / "elsewhere")
    before = tree(tmp_path)
    with caplog.at_level(logging.ERROR, logger="llama_agent.runtime.wasm.compile_cache"):
        wary = WasmHost(cache)
    assert f"not using the compile cache in {cache}, nothing in it is trusted" in caplog.text
    assert UNSAFE[case].format(elsewhere=tmp_path / "elsewhere") in caplog.text
    loaded = wary.load_bytes(echo_wasm(), Path("echo.wasm"))
    assert loaded.from_cache is False
    assert wary.invoke(loaded, {"value": "hi"}).text == "hi"
    private = loaded.artifact.path.parent
    assert not private.is_relative_to(tmp_path)
    assert private.stat().st_mode & 0o777 == 0o700
    assert tree(tmp_path) == before  # nothing read from it was trusted, nothing written to it
    wary.close()
    assert not private.exists()  # the private cache goes with the process


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_key_that_is_not_a_file_neither_blocks_nor_is_used(tmp_path: Path, kind: str) -> None:
    """A FIFO would block start-up for ever (before `initialize` is answered); /dev/zero's device
    would read for ever."""
    (tmp_path / "cache" / "components").mkdir(parents=True)
    key = tmp_path / "cache" / "signing.key"
    if kind == "fifo":
        os.mkfifo(key, 0o600)
    else:
        make_device(key)
    made: list[WasmHost] = []
    starting = threading.Thread(target=lambda: made.append(host(tmp_path)), daemon=True)
    started = time.monotonic()
    starting.start()
    starting.join(10)
    assert not starting.is_alive(), "start-up blocked on the key"
    assert time.monotonic() - started < 5
    [wary] = made
    loaded = wary.load_bytes(tool_wasm("echo"), Path("echo.wasm"))
    assert wary.invoke(loaded, {"value": "hi"}).text == "hi"
    assert not loaded.artifact.path.is_relative_to(tmp_path)
    wary.close()


def test_a_torn_key_is_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "cache").mkdir(mode=0o700)
    key = tmp_path / "cache" / "signing.key"
    key.write_bytes(b"short")
    key.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        loaded = host(tmp_path).load_bytes(tool_wasm("torn"), Path("torn.wasm"))
    assert "holds 5 bytes, not 32: making a new key" in caplog.text
    assert len(key.read_bytes()) == 32
    assert loaded.artifact.path.parent == tmp_path / "cache" / "components"
    assert host(tmp_path).load_bytes(tool_wasm("torn"), Path("torn.wasm")).from_cache is True


@pytest.mark.parametrize("swap", ["entry a link", "signature a link", "signature a FIFO", "entry a FIFO"])
def test_an_entry_or_signature_that_is_not_a_file_is_compiled_again(tmp_path: Path, swap: str) -> None:
    """Read without following a link or waiting on a FIFO: a link to another tool's entry, with
    its valid signature, is not that tool."""
    first = host(tmp_path)
    wasm = tool_wasm("swapped")
    loaded = first.load_bytes(wasm, Path("swapped.wasm"))
    other = first.load_bytes(tool_wasm("other", behaviour="version"), Path("other.wasm"))
    entry, mac = loaded.artifact.path, Path(f"{loaded.artifact.path}.mac")
    target = entry if swap.startswith("entry") else mac
    target.unlink()
    if swap.endswith("a link"):
        source = other.artifact.path if target == entry else Path(f"{other.artifact.path}.mac")
        target.symlink_to(source)
    else:
        os.mkfifo(target, 0o600)
    done: list[bool] = []
    again = host(tmp_path)
    loading = threading.Thread(
        target=lambda: done.append(again.load_bytes(wasm, Path("swapped.wasm")).from_cache), daemon=True
    )
    loading.start()
    loading.join(10)
    assert done == [False]
    reloaded = again.load_bytes(wasm, Path("swapped.wasm"))  # stored afresh, as a file: used
    assert reloaded.from_cache is True
    assert again.invoke(reloaded, {"value": "x"}).text == "x"


@pytest.fixture
def noexec_temporary_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """$TMPDIR on a file system mounted noexec, as a hardened /tmp is (where mounting is allowed)."""
    mount = tmp_path / "noexec"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "noexec,size=16m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a noexec file system here: {made.stderr.decode().strip()}")
    monkeypatch.setenv("TMPDIR", str(mount))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read $TMPDIR again
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_private_cache_goes_where_compiled_code_may_run(tmp_path: Path, noexec_temporary_dir: Path) -> None:
    """Compiled code is mapped executable from its file: not from a noexec /tmp."""
    (tmp_path / "shared").mkdir(mode=0o777)
    (tmp_path / "shared").chmod(0o777)
    wary = WasmHost(tmp_path / "shared")
    loaded = wary.load_bytes(tool_wasm("echo"), Path("echo.wasm"))
    assert not loaded.artifact.path.is_relative_to(noexec_temporary_dir)
    assert wary.invoke(loaded, {"value": "hi"}).text == "hi"
    wary.close()
    assert not loaded.artifact.path.parent.exists()
