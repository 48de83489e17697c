"""A compile cache a replica only reads (`--cache-read-only`): filled and sealed beforehand (its
entries signed with a private key that is then discarded), its entries verified against the public
key it holds, and nothing in it ever written, whatever it lacks or holds.

Processes here run as root, for whom a read-only mode bit stops nothing: so each test opens the
cache the way a replica does and checks that no name, inode, size or modification time in it
changed (`tree`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from llama_agent.runtime.wasm.host import WasmHost

from tests.unsafe_files import OTHER_UID, give_to_another_user, tree
from tests.wat_tools import tool_wasm


def sealed_cache(directory: Path, *names: str) -> Path:
    """A cache filled with the tools `names` and sealed, as when an image is built."""
    builder = WasmHost(directory)
    loaded = [builder.load_bytes(tool_wasm(name), Path(f"{name}.wasm")) for name in names]
    assert not any(tool.from_cache for tool in loaded)
    assert builder.seal(loaded) == len(names)
    builder.close()
    return directory


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A cache filled beforehand with the tool `built` and sealed."""
    return sealed_cache(tmp_path / "cache", "built")


def replica(cache: Path) -> WasmHost:
    return WasmHost(cache, cache_read_only=True)


def test_an_entry_sealed_beforehand_is_used_and_nothing_is_written(cache: Path) -> None:
    before = tree(cache)
    host = replica(cache)
    loaded = host.load_bytes(tool_wasm("built"), Path("built.wasm"))
    assert loaded.from_cache is True
    assert loaded.artifact.path.parent == cache / "components"
    assert host.invoke(loaded, {"value": "hi"}).text == "hi"
    host.close()
    assert tree(cache) == before


def test_a_tool_the_cache_lacks_is_compiled_for_the_process_alone(cache: Path) -> None:
    before = tree(cache)
    host = replica(cache)
    loaded = host.load_bytes(tool_wasm("new"), Path("new.wasm"))
    assert loaded.from_cache is False
    private = loaded.artifact.path.parent
    assert not private.is_relative_to(cache) and private.stat().st_mode & 0o777 == 0o700
    assert host.invoke(loaded, {"value": "fresh"}).text == "fresh"  # its worker may read there
    assert host.load_bytes(tool_wasm("new"), Path("new.wasm")).from_cache is True  # from the private one
    host.close()
    assert not private.exists()
    assert tree(cache) == before


def test_warming_the_cache_writes_only_the_private_one(cache: Path, tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "built.wasm").write_bytes(tool_wasm("built"))
    (tools / "other.wasm").write_bytes(tool_wasm("other"))
    before = tree(cache)
    host = replica(cache)
    for path in sorted(tools.iterdir()):
        host.precompile(path)
    assert host.load(tools / "built.wasm").from_cache is True
    assert host.load(tools / "other.wasm").from_cache is True  # compiled by precompile, privately
    host.close()
    assert tree(cache) == before


def test_a_sealed_cache_holds_no_key_that_can_sign(cache: Path) -> None:
    names = {str(path.relative_to(cache)) for path in cache.rglob("*")}
    [entry] = [name for name in names if name.endswith(".cwasm")]
    # The entry, its Ed25519 signature and the public key: no signing.key, no HMAC signature.
    assert names == {"components", entry, f"{entry}.sig", "signing.pub"}
    assert len((cache / "signing.pub").read_bytes()) == 32  # a raw Ed25519 public key, nothing more


def copy_entry(source: Path, cache: Path) -> None:
    """`source`'s only entry and its signature, over `cache`'s only entry and signature."""
    [entry] = (cache / "components").glob("*.cwasm")
    [other] = (source / "components").glob("*.cwasm")
    entry.write_bytes(other.read_bytes())
    Path(f"{entry}.sig").write_bytes(Path(f"{other}.sig").read_bytes())


@pytest.mark.parametrize(
    "tamper", ["flip_a_byte", "drop_the_signature", "another_tools_entry", "sealed_with_another_key"]
)
def test_an_entry_that_does_not_verify_is_refused_and_left_as_it_is(
    cache: Path, tmp_path: Path, tamper: str, caplog: pytest.LogCaptureFixture
) -> None:
    [entry] = (cache / "components").glob("*.cwasm")
    signature = Path(f"{entry}.sig")
    if tamper == "flip_a_byte":
        data = bytearray(entry.read_bytes())
        data[len(data) // 2] ^= 0xFF
        entry.write_bytes(bytes(data))
    elif tamper == "drop_the_signature":
        signature.unlink()
    elif tamper == "another_tools_entry":  # with its valid signature, under the same key
        both = sealed_cache(tmp_path / "both", "built", "other")
        (both / "signing.pub").replace(cache / "signing.pub")
        [other] = [path for path in (both / "components").glob("*.cwasm") if path.name != entry.name]
        entry.write_bytes(other.read_bytes())
        signature.write_bytes(Path(f"{other}.sig").read_bytes())
    else:  # the same tool compiled and sealed elsewhere, under another private key
        elsewhere = sealed_cache(tmp_path / "elsewhere", "built")
        copy_entry(elsewhere, cache)
        there = replica(elsewhere)  # where the pair is verified with its own public key
        assert there.load_bytes(tool_wasm("built"), Path("built.wasm")).from_cache is True
        there.close()
    before = tree(cache)
    host = replica(cache)
    with caplog.at_level(logging.WARNING):
        loaded = host.load_bytes(tool_wasm("built"), Path("built.wasm"))
    assert loaded.from_cache is False  # refused, compiled privately
    assert not loaded.artifact.path.is_relative_to(cache)
    assert loaded.metadata.name == "built"
    assert host.invoke(loaded, {"value": "mine"}).text == "mine"
    if tamper != "drop_the_signature":
        assert "does not match its signature" in caplog.text
    host.close()
    assert tree(cache) == before  # not repaired either: the cache is not the replica's to write


def test_a_cache_filled_but_not_sealed_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    builder = WasmHost(cache)  # filled, its entries signed with signing.key: the key every replica would hold
    builder.load_bytes(tool_wasm("built"), Path("built.wasm"))
    builder.close()
    before = tree(cache)
    with caplog.at_level(logging.ERROR):
        host = replica(cache)
    assert "filled but not sealed" in caplog.text
    assert f"llama-agent tools seal --cache-dir {cache}" in caplog.text
    loaded = host.load_bytes(tool_wasm("built"), Path("built.wasm"))
    assert loaded.from_cache is False and not loaded.artifact.path.is_relative_to(cache)
    host.close()
    assert tree(cache) == before


def test_a_cache_without_a_public_key_is_not_used_and_no_key_is_made(
    cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (cache / "signing.pub").unlink()
    before = tree(cache)
    with caplog.at_level(logging.ERROR):
        host = replica(cache)
    assert "cannot read the read-only compile cache" in caplog.text
    loaded = host.load_bytes(tool_wasm("built"), Path("built.wasm"))
    assert loaded.from_cache is False and not loaded.artifact.path.is_relative_to(cache)
    host.close()
    assert tree(cache) == before


@pytest.mark.parametrize("case", ["key writable by others", "key of another user", "components a link"])
def test_a_cache_someone_else_could_write_is_not_used(
    cache: Path, tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = cache / "signing.pub"
    if case == "key writable by others":
        key.chmod(0o666)
    elif case == "key of another user":
        give_to_another_user(key)
    else:
        os.rename(cache / "components", tmp_path / "elsewhere")
        (cache / "components").symlink_to(tmp_path / "elsewhere")
    before = tree(cache)
    with caplog.at_level(logging.ERROR):
        host = replica(cache)
    assert "not using the read-only compile cache" in caplog.text
    assert "writable by others" in caplog.text or f"uid {OTHER_UID}" in caplog.text or "link" in caplog.text
    loaded = host.load_bytes(tool_wasm("built"), Path("built.wasm"))
    assert loaded.from_cache is False and not loaded.artifact.path.is_relative_to(tmp_path)
    host.close()
    assert tree(cache) == before
