"""The signed compile cache: only entries the daemon signed are ever run."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import pytest

from daemon.runtime.policy import DirGrant, PolicyError, Protected
from daemon.runtime.sandbox import Limits
from daemon.runtime.wasm_host import WasmHost
from daemon.runtime.workers import WorkerPool
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
    job = {
        "op": "invoke",
        "artifact": str(loaded.artifact.path),
        "digest": loaded.artifact.sha256,
        "contract": loaded.contract.to_wire(),
        "limits": asdict(Limits()),
        "dirs": [],
        "env": [],
        "arguments": {"value": "x"},
    }
    assert pool.run(job, 5).body["text"] == "x"
    changed = pool.run({**job, "digest": "0" * 64}, 5)  # what a file swapped in after the check has
    assert changed.kind == "error"
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
