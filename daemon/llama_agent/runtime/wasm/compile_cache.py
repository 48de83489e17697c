"""On-disk cache of compiled components, keyed by content hash and engine identity.

Compiled code is loaded without further checks by wasmtime, so every entry is signed
(runtime/storage/signing.py): an HMAC, under a key kept with the cache (so every daemon using the
cache verifies its entries), over which tool the entry is for and the entry's digest. An entry
that does not verify (rewritten, swapped for another tool's entry, truncated) is compiled again
and never run. No tool can be granted the cache directory or anything in it
(runtime/tools/policy.py).

A signature is worth what the key is: the cache directory, its `components` directory and the key
must be the person's own (runtime/storage/private_files.py), or whoever else could write them could
sign their own code as any tool. A cache that is not is neither read nor written: the process
compiles into a private directory instead (`CompileCache.open`).

A replica of a service reads a shared cache that was filled and sealed beforehand (when its image
was built) and never writes it (`CompileCache.open_read_only`). An HMAC key would let whoever takes
over one replica sign code for all, so a shared cache is sealed instead (`CompileCache.seal`, the
command `llama-agent tools seal`): each entry signed with Ed25519 (`NAME.cwasm.sig`) under a
private key that is then discarded, the cache keeping only the public key (`signing.pub`) and no
HMAC key. A replica verifies entries against that public key, and what the cache lacks (or what
does not verify) is compiled into a private cache of the process. Its directories and public key
may then be root's as well as the person's (whoever built the image), but still writable by nobody
else. A cache filled but not sealed (a `signing.key`, no `signing.pub`) is not used read-only.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import wasmtime
from wasmtime.component import Component

from llama_agent.runtime.storage.atomic import write_atomically
from llama_agent.runtime.storage.digests import file_sha256, sha256_hex
from llama_agent.runtime.storage.files import RefusedFile
from llama_agent.runtime.storage.private_files import (
    NotPrivate,
    check_the_way,
    command,
    private_directory,
    read_open_file,
    shown,
    writable_by_others,
)
from llama_agent.runtime.storage.signing import (
    KEY_NAME,
    PUBLIC_KEY_BYTES,
    PUBLIC_KEY_NAME,
    new_key,
    new_key_pair,
    public_key_of,
    seal,
    sealed,
    sign,
    signed,
    stored_key,
)

log = logging.getLogger(__name__)

# Compiling a component takes a core for seconds. Compiles run on their own threads at the
# lowest priority, so the calls being served keep their latency (measured in
# bench/hot_reload.py), while file watching and policy reloads stay at normal priority.
COMPILER_NICENESS = 19
COMPONENTS_DIR = "components"
MAC_SUFFIX = ".mac"
SEAL_SUFFIX = ".sig"
# An HMAC's 64 hex digits or an Ed25519 signature's 128, and room for a newline.
MAX_SIGNATURE_BYTES = 256
# What makes a filled cache one that replicas can read (`CompileCache.seal`).
SEAL_COMMAND = "llama-agent tools seal --cache-dir"
# Compiled code is a few times its component (at most 128 MiB, daemon/llama_agent/runtime/storage/files.py).
MAX_ENTRY_BYTES = 1024 * 1024 * 1024


@dataclass(frozen=True)
class Artifact:
    """A verified cache entry: where it is and the sha256 of its bytes, for workers to check."""

    path: Path
    sha256: str


def _lower_priority_of_this_thread() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), COMPILER_NICENESS)
    except (AttributeError, OSError) as error:  # not Linux, or not permitted
        log.debug("cannot lower the compiler thread's priority: %s", error)


class NotSealed(OSError):
    """A cache given to read-only replicas that was filled but not sealed."""


class CompileCache:
    """Maps wasm bytes to a compiled `Component` and its verified entry, compiling only on a miss."""

    # Beside each entry: its signature, an HMAC under the cache's key.
    _signature_suffix = MAC_SUFFIX

    def __init__(self, directory: Path, engine: wasmtime.Engine, engine_tag: str, key: bytes) -> None:
        self._dir = directory
        self._engine = engine
        self._engine_tag = engine_tag
        self._key = key
        self._compilers = ThreadPoolExecutor(
            max_workers=os.cpu_count() or 1,
            thread_name_prefix="compile",
            initializer=_lower_priority_of_this_thread,
        )
        self._remove: Callable[[], object] | None = None

    @classmethod
    def open(cls, cache_dir: Path, engine: wasmtime.Engine, engine_tag: str) -> CompileCache:
        """The cache in `cache_dir/components`, signed with `cache_dir/signing.key`, once both
        directories and the key are checked to be the person's own. Otherwise nothing in it is
        used, or written to: the error says what is wrong and how to fix it, and this process
        compiles into a private directory of its own (removed when it ends) under a key kept
        nowhere, so it serves all the same, compiling each tool again."""
        try:
            key = stored_key(cache_dir)
            directory = cache_dir / COMPONENTS_DIR
            with private_directory(directory, create=True):
                pass
            return cls(directory, engine, engine_tag, key)
        except NotPrivate as error:
            log.error(
                "not using the compile cache in %s, nothing in it is trusted: %s. Until that is "
                "fixed, or another --cache-dir is given, tools are compiled afresh at each start",
                shown(cache_dir),
                error,
            )
        except OSError as error:
            log.warning(
                "cannot use the compile cache in %s (%s): tools are compiled afresh at each start",
                shown(cache_dir),
                error,
            )
        return cls.private(engine, engine_tag)

    @classmethod
    def open_read_only(cls, cache_dir: Path, engine: wasmtime.Engine, engine_tag: str) -> CompileCache:
        """The cache in `cache_dir/components`, filled and sealed beforehand (`seal`), only read:
        nothing in `cache_dir` is written, and no private key is needed. What it lacks is compiled
        into a private cache (`private`). A cache that cannot be trusted (see the module's
        docstring), is not sealed or cannot be read is not used at all: the error says why, and
        every tool is compiled into the private cache."""
        fallback = cls.private(engine, engine_tag)
        try:
            public_key = _read_only_public_key(cache_dir)
            directory = cache_dir / COMPONENTS_DIR
            _check_read_only_directory(directory)
        except (NotPrivate, NotSealed) as error:
            log.error("not using the read-only compile cache in %s: %s", shown(cache_dir), error)
        except OSError as error:
            log.error("cannot read the read-only compile cache in %s: %s", shown(cache_dir), error)
        else:
            log.info("reading the compile cache in %s, never writing it", shown(cache_dir))
            return ReadOnlyCompileCache(directory, engine, engine_tag, public_key, fallback)
        return fallback

    @classmethod
    def private(cls, engine: wasmtime.Engine, engine_tag: str) -> CompileCache:
        """A cache for this process alone: a new directory (mkdtemp: 0700, a name nobody could
        have taken first) and a key that is never written down, removed by `close` or at exit."""
        directory = Path(tempfile.mkdtemp(prefix="llama-agent-cache-", dir=_executable_temporary_dir()))
        cache = cls(directory, engine, engine_tag, new_key())
        cache._remove = weakref.finalize(cache, shutil.rmtree, directory, ignore_errors=True)
        log.info("compiling tools into %s, for this process only", shown(directory))
        return cache

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def readable_directories(self) -> tuple[Path, ...]:
        """Where the entries it hands out lie (workers may read there)."""
        return (self._dir,)

    def close(self) -> None:
        """Remove a private cache's directory (workers that mapped its entries keep them)."""
        if self._remove is not None:
            self._remove()

    def _compile(self, wasm: bytes) -> Component:
        return self._compilers.submit(Component, self._engine, wasm).result()

    def entry_path(self, content_hash: str) -> Path:
        key = hashlib.sha256(f"{self._engine_tag}:{content_hash}".encode()).hexdigest()
        return self._dir / f"{key[:40]}.cwasm"

    def _signed(self, content_hash: str, entry_sha256: str) -> bytes:
        """What an entry's signature covers: which tool, for which engine, and the entry's digest."""
        return f"{self._engine_tag}:{content_hash}:{entry_sha256}".encode()

    def _signature_of(self, entry: Path) -> Path:
        return entry.parent / (entry.name + self._signature_suffix)

    def _verifies(self, message: bytes, signature: str) -> bool:
        return signed(self._key, message, signature)

    def seal(self, cache_dir: Path, entries: Iterable[tuple[str, Artifact]]) -> int:
        """Seal `cache_dir`, this cache, for replicas that only read it (`open_read_only`): sign
        each of `entries` (a content hash and its entry, as `load` verified it) with a new Ed25519
        key pair, write the public key, and keep the private key nowhere. The cache's HMAC key and
        signatures are removed: a sealed cache holds no secret that could sign. Returns how many
        entries were sealed; raises OSError if this is not `cache_dir`'s cache (it could not be
        used: the error was logged) or a file cannot be written."""
        if self._dir != cache_dir / COMPONENTS_DIR:
            raise OSError(f"the compile cache in {shown(cache_dir)} is not in use (see the error above)")
        private_key = new_key_pair()
        _remove_all(self._dir, SEAL_SUFFIX)  # a seal's signatures are worth only its public key
        count = 0
        for content_hash, artifact in entries:
            if artifact.path.parent != self._dir:
                raise OSError(f"{shown(artifact.path)} is not an entry of {shown(self._dir)}")
            signature = seal(private_key, self._signed(content_hash, artifact.sha256))
            write_atomically(
                artifact.path.parent / (artifact.path.name + SEAL_SUFFIX), signature.hex().encode()
            )
            count += 1
        write_atomically(cache_dir / PUBLIC_KEY_NAME, public_key_of(private_key), mode=0o644)
        with contextlib.suppress(FileNotFoundError):
            (cache_dir / KEY_NAME).unlink()
        _remove_all(self._dir, MAC_SUFFIX)
        return count

    def load(self, wasm: bytes, content_hash: str) -> tuple[Component, Artifact, bool]:
        """The compiled component, its cache entry, and whether it came from the cache."""
        entry = self.entry_path(content_hash)
        cached = self._load_verified(entry, content_hash)
        if cached is not None:
            return cached[0], cached[1], True
        component = self._compile(wasm)
        artifact = self._store(entry, content_hash, component)
        return component, artifact, False

    def ensure(self, wasm: bytes, content_hash: str) -> None:
        """Compile and store unless an entry exists (`load` verifies it); compile errors are left
        for `load` to report."""
        entry = self.entry_path(content_hash)
        if entry.exists() and self._signature_of(entry).exists():
            return
        with contextlib.suppress(wasmtime.WasmtimeError, OSError):
            self._store(entry, content_hash, self._compile(wasm))

    def _load_verified(self, entry: Path, content_hash: str) -> tuple[Component, Artifact] | None:
        """The entry's component if its signature holds. It is mapped from the very descriptor
        whose content was checked, so a file renamed over the entry meanwhile is not loaded.
        Neither the entry nor its signature is read through a link or from anything but a
        regular file of bounded size."""
        try:
            expected = _read_regular(self._signature_of(entry), MAX_SIGNATURE_BYTES).decode("ascii").strip()
            fd = _open_regular(entry, MAX_ENTRY_BYTES)
        except (OSError, UnicodeDecodeError):
            return None
        try:
            digest = file_sha256(fd)
            if not self._verifies(self._signed(content_hash, digest), expected):
                log.warning("cache entry %s does not match its signature: compiling again", entry)
                return None
            component = Component.deserialize_file(self._engine, f"/proc/self/fd/{fd}")
        except wasmtime.WasmtimeError as error:
            log.warning("discarding unusable cache entry %s: %s", entry, error)
            return None
        except OSError:
            return None
        finally:
            os.close(fd)
        return component, Artifact(entry, digest)

    def _store(self, entry: Path, content_hash: str, component: Component) -> Artifact:
        """Written whole, then renamed into place: a concurrent reader never sees half an entry.
        The signature goes last: an entry without one is compiled again."""
        data = component.serialize()
        digest = sha256_hex(data)
        write_atomically(entry, data)
        signature = sign(self._key, self._signed(content_hash, digest)).hex()
        write_atomically(entry.parent / (entry.name + MAC_SUFFIX), signature.encode())
        return Artifact(entry, digest)


class ReadOnlyCompileCache(CompileCache):
    """A cache filled and sealed beforehand, only ever read (`CompileCache.open_read_only`): its
    entries are verified against `public_key`; what it lacks, or what does not verify, is compiled
    into `fallback`, a private cache."""

    _signature_suffix = SEAL_SUFFIX

    def __init__(
        self,
        directory: Path,
        engine: wasmtime.Engine,
        engine_tag: str,
        public_key: bytes,
        fallback: CompileCache,
    ) -> None:
        # An HMAC key kept nowhere: it neither signs (nothing is stored here) nor verifies anything.
        super().__init__(directory, engine, engine_tag, new_key())
        self._public_key = public_key
        self._fallback = fallback

    def _verifies(self, message: bytes, signature: str) -> bool:
        return sealed(self._public_key, message, signature)

    def seal(self, cache_dir: Path, entries: Iterable[tuple[str, Artifact]]) -> int:
        raise OSError(
            f"the compile cache in {shown(cache_dir)} is only read: it is sealed where it is filled"
        )

    @property
    def readable_directories(self) -> tuple[Path, ...]:
        return (self._dir, *self._fallback.readable_directories)

    def close(self) -> None:
        self._fallback.close()

    def load(self, wasm: bytes, content_hash: str) -> tuple[Component, Artifact, bool]:
        cached = self._load_verified(self.entry_path(content_hash), content_hash)
        if cached is not None:
            return cached[0], cached[1], True
        return self._fallback.load(wasm, content_hash)

    def ensure(self, wasm: bytes, content_hash: str) -> None:
        entry = self.entry_path(content_hash)
        if not (entry.exists() and self._signature_of(entry).exists()):
            self._fallback.ensure(wasm, content_hash)


def _read_only_public_key(cache_dir: Path) -> bytes:
    """The public key of a read-only cache, checked as `_check_read_only` says; NotSealed if the
    cache has an HMAC key instead, NotPrivate or another OSError if it cannot be had."""
    path = cache_dir / PUBLIC_KEY_NAME
    check_the_way(path)
    directory_fd = os.open(cache_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _check_read_only(cache_dir, os.fstat(directory_fd), "directory")
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(PUBLIC_KEY_NAME, flags, dir_fd=directory_fd)
    except FileNotFoundError:
        if os.path.lexists(cache_dir / KEY_NAME):
            raise NotSealed(
                f"it was filled but not sealed: it holds {KEY_NAME}, a key that could sign code "
                f"for every replica, and no {PUBLIC_KEY_NAME}. Seal it where it is built "
                f"({command(*SEAL_COMMAND.split(), cache_dir)}) and ship it without {KEY_NAME}"
            ) from None
        raise
    finally:
        os.close(directory_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_size != PUBLIC_KEY_BYTES:
            raise NotPrivate(
                f"{shown(path)} is not a regular file of {PUBLIC_KEY_BYTES} bytes with one name: "
                f"seal the cache again where it is built ({command(*SEAL_COMMAND.split(), cache_dir)})"
            )
        _check_read_only(path, info, "file")
        return read_open_file(fd, path, PUBLIC_KEY_BYTES)
    finally:
        os.close(fd)


def _check_read_only_directory(directory: Path) -> None:
    """The entries' directory: itself, not a link, and checked as `_check_read_only` says, as is
    every directory on the way to it."""
    check_the_way(directory / "entry")
    info = os.stat(directory, follow_symlinks=False)
    if not stat.S_ISDIR(info.st_mode):
        raise NotPrivate(f"{shown(directory)} is not a directory (a link is not followed)")
    _check_read_only(directory, info, "directory")


def _check_read_only(path: Path, info: os.stat_result, kind: str) -> None:
    """A read-only cache's directory or public key must be root's or the person's, writable by
    nobody else: whoever else could write it could put in a key of theirs, or their own code."""
    if info.st_uid not in (0, os.geteuid()):
        raise NotPrivate(
            f"the {kind} {shown(path)} belongs to another user (uid {info.st_uid}), not to root or "
            f"to you (uid {os.geteuid()}): whoever owns it decides what runs"
        )
    if writable_by_others(info):
        raise NotPrivate(
            f"the {kind} {shown(path)} is writable by others (mode {stat.S_IMODE(info.st_mode):o}): "
            f"{command('chmod', 'go-w', path)}"
        )


def _executable_temporary_dir() -> str | None:
    """Where a private cache can go: compiled code is mapped executable from its file, which a
    file system mounted `noexec` (a hardened /tmp) refuses. The temporary directory ($TMPDIR,
    /tmp) if it allows it, else the first of the usual others that does; None (the temporary
    directory) if none does."""
    candidates = (tempfile.gettempdir(), os.environ.get("XDG_RUNTIME_DIR"), "/var/tmp", "/dev/shm")
    for candidate in candidates:
        with contextlib.suppress(OSError, TypeError):
            if candidate and not os.statvfs(candidate).f_flag & os.ST_NOEXEC:
                return candidate
    return None


def _open_regular(path: Path, max_bytes: int) -> int:
    """`path` opened for reading if it is a regular file of at most `max_bytes` (not a link, not
    a FIFO that would block); raises OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
        os.close(fd)
        raise RefusedFile(f"{shown(path)} is not a regular file of at most {max_bytes:,} bytes")
    return fd


def _remove_all(directory: Path, suffix: str) -> None:
    for path in directory.glob(f"*{suffix}"):
        path.unlink()


def _read_regular(path: Path, max_bytes: int) -> bytes:
    fd = _open_regular(path, max_bytes)
    try:
        return read_open_file(fd, path, max_bytes)
    finally:
        os.close(fd)
