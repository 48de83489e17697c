"""Per-tool grants: what one tool may touch and consume, read from a file beside it.

`NAME.wasm` is granted what `NAME.policy.toml` says, and nothing more; without the file
(or when it does not parse) the tool runs with the defaults: no files, no environment,
no network, 10 s, 256 MiB of memory, 1 MiB of output per stream. See docs/security.md.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from llama_agent.runtime.storage.files import read_policy_text
from llama_agent.runtime.tools.limits import MIB, Limits

POLICY_SUFFIX = ".policy.toml"
WORKSPACE_GUEST = "/workspace"
NETWORK_REFUSAL = (
    "network grants are not supported: wasmtime-py cannot limit outgoing connections to "
    "listed hosts, so no tool gets a network"
)


class PolicyError(ValueError):
    """A policy file that cannot be applied; the tool keeps the defaults."""


@dataclass(frozen=True)
class DirGrant:
    host: Path
    guest: str
    mode: Literal["ro", "rw"] = "ro"
    # (device, inode) of `host` when it was granted: a directory swapped in later is not granted.
    # Part of equality, so that reading the policy again pins (and announces) the new directory.
    identity: tuple[int, int] | None = None

    def still_granted(self) -> bool:
        """Whether `host` is still the directory that was granted, reached through no symlink."""
        try:
            info = os.stat(self.host)
            real = os.path.realpath(self.host)
        except OSError:
            return False
        return real == str(self.host) and (
            self.identity is None or (info.st_dev, info.st_ino) == self.identity
        )


@dataclass(frozen=True)
class Protected:
    """Directories no policy may grant.

    - `above`: `/` and `$HOME`, and anything above them, in any mode (what is inside `$HOME`,
      a workspace say, may be granted);
    - `writable`: tools directories, the compile cache and the config directory, anything above
      or inside them, for writing. A tool that could write there could rewrite other tools'
      code, their policies, their compiled code or the person's approvals of them (grants.toml).
      Reading is allowed (a workspace may hold the cache): the cache's signing key lets nobody
      who cannot also write the cache run anything.
    """

    above: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    # A tenant's tools (a shared deployment): every directory granted must lie inside `inside`
    # (the tenant's workspace root, resolved), and no environment variable is granted: the
    # service's environment holds the operator's secrets, not the tenant's.
    inside: Path | None = None
    env: bool = True

    def within(self, root: Path) -> Protected:
        """These protections, and every grant held inside `root` with no environment."""
        return replace(self, inside=_resolved(root), env=False)

    @classmethod
    def for_daemon(
        cls, tools_dirs: Sequence[Path], cache_dir: Path, config_dir: Path | None = None
    ) -> Protected:
        above = [Path("/")]
        home = os.environ.get("HOME")
        if home:
            above.append(Path(home))
        return cls(
            above=tuple(_resolved(path) for path in above),
            writable=tuple(
                _resolved(path) for path in (*tools_dirs, cache_dir, *([config_dir] if config_dir else []))
            ),
        )

    def check(self, grant: DirGrant, source: str) -> None:
        if self.inside is not None and not grant.host.is_relative_to(self.inside):
            raise PolicyError(
                f"{source}: {grant.host} lies outside the tenant's workspace root {self.inside}: refused"
            )
        for path in self.above:
            if path.is_relative_to(grant.host):
                raise PolicyError(f"{source}: granting {grant.host} would give away {path}: refused")
        if grant.mode == "rw":
            for path in self.writable:
                if _overlap(path, grant.host):
                    raise PolicyError(
                        f"{source}: a read-write grant of {grant.host} would let the tool rewrite {path} "
                        "(tools, their policies, compiled code or approved grants): refused; grant a "
                        "directory that "
                        "neither contains it nor lies inside it"
                    )


def _overlap(protected: Path, granted: Path) -> bool:
    return protected.is_relative_to(granted) or granted.is_relative_to(protected)


@dataclass(frozen=True)
class Grants:
    limits: Limits = field(default_factory=Limits)
    dirs: tuple[DirGrant, ...] = ()
    env: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "timeoutSeconds": self.limits.timeout_seconds,
            "memoryBytes": self.limits.memory_bytes,
            "memories": self.limits.memories,
            "outputBytes": self.limits.output_bytes,
            "writeBytes": self.limits.write_bytes,
            "dirs": [{"host": str(d.host), "guest": d.guest, "mode": d.mode} for d in self.dirs],
            "env": list(self.env),
            "network": False,
        }


def policy_path(tool_path: Path) -> Path:
    return tool_path.with_name(tool_path.stem + POLICY_SUFFIX)


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def read_policy(
    path: Path, defaults: Limits, workspace: Path | None = None, protected: Protected | None = None
) -> Grants:
    """Parse a policy file. Raises PolicyError, naming the problem, for anything not understood."""
    document = load_policy_document(path)
    return parse_policy(
        document, path.parent, defaults, source=str(path), workspace=workspace, protected=protected
    )


def load_policy_document(path: Path) -> dict[str, Any]:
    """A policy file's TOML document, not yet checked. Raises PolicyError if it cannot be read."""
    try:
        return tomllib.loads(read_policy_text(path))
    except (OSError, UnicodeDecodeError) as error:
        raise PolicyError(f"cannot read {path}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{path} is not valid TOML: {error}") from error


def parse_policy(
    document: dict[str, Any],
    base: Path,
    defaults: Limits,
    source: str,
    workspace: Path | None = None,
    protected: Protected | None = None,
) -> Grants:
    """`workspace = "ro"|"rw"` grants the client's workspace folder, when there is one, at /workspace."""
    known = {
        "timeout_seconds",
        "memory_mib",
        "memories",
        "output_kib",
        "write_mib",
        "env",
        "dirs",
        "network",
        "workspace",
    }
    unknown = sorted(document.keys() - known)
    if unknown:
        raise PolicyError(f"{source}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(known))})")
    if document.get("network", False) is not False:
        raise PolicyError(f"{source}: {NETWORK_REFUSAL}")
    limits = Limits(
        timeout_seconds=_number(document, "timeout_seconds", defaults.timeout_seconds, 0.01, 3600, source),
        memory_bytes=int(
            _number(document, "memory_mib", defaults.memory_bytes / MIB, 1, 65536, source) * MIB
        ),
        output_bytes=int(
            _number(document, "output_kib", defaults.output_bytes / 1024, 1, 1048576, source) * 1024
        ),
        memories=_integer(document, "memories", defaults.memories, 1, 16, source),
        write_bytes=int(_number(document, "write_mib", defaults.write_bytes / MIB, 0, 65536, source) * MIB),
    )
    env = document.get("env", [])
    if not isinstance(env, list) or not all(isinstance(name, str) and name for name in env):
        raise PolicyError(f"{source}: 'env' must be a list of variable names")
    if env and protected is not None and not protected.env:
        raise PolicyError(f"{source}: a tenant's tools get no environment variables: refused")
    dirs = document.get("dirs", [])
    if not isinstance(dirs, list):
        raise PolicyError(f"{source}: 'dirs' must be an array of tables ([[dirs]])")
    granted = [_dir_grant(entry, base, source) for entry in dirs]
    workspace_mode = document.get("workspace")
    if workspace_mode not in (None, "ro", "rw"):
        raise PolicyError(f"{source}: workspace must be 'ro' or 'rw', not {workspace_mode!r}")
    if workspace_mode is not None and workspace is not None:
        host = workspace.resolve()
        granted.insert(0, DirGrant(host, WORKSPACE_GUEST, workspace_mode, _identity(host)))
    for grant in granted:
        (protected or Protected()).check(grant, source)
    return Grants(limits, tuple(granted), tuple(env))


def _number(
    document: dict[str, Any], key: str, default: float, low: float, high: float, source: str
) -> float:
    value = document.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise PolicyError(f"{source}: {key!r} must be a number from {low:g} to {high:g}")
    return float(value)


def _integer(document: dict[str, Any], key: str, default: int, low: int, high: int, source: str) -> int:
    value = document.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PolicyError(f"{source}: {key!r} must be a whole number from {low} to {high}")
    return value


def _dir_grant(entry: Any, base: Path, source: str) -> DirGrant:
    if not isinstance(entry, dict) or not {"host", "guest"} <= entry.keys():
        raise PolicyError(f"{source}: each [[dirs]] needs 'host' and 'guest'")
    extra = sorted(entry.keys() - {"host", "guest", "mode"})
    if extra:
        raise PolicyError(f"{source}: unknown [[dirs]] setting {extra[0]!r}")
    host = (base / str(entry["host"])).resolve()
    if not host.is_dir():
        raise PolicyError(f"{source}: granted directory {host} does not exist")
    guest = str(entry["guest"])
    if not PurePosixPath(guest).is_absolute():
        raise PolicyError(f"{source}: guest path {guest!r} must be absolute, like /data")
    mode = entry.get("mode", "ro")
    if mode not in ("ro", "rw"):
        raise PolicyError(f"{source}: mode must be 'ro' or 'rw', not {mode!r}")
    return DirGrant(host, guest, mode, _identity(host))
