"""The tenants file: who may use a shared deployment, with what, within which limits.

A TOML file of `[[tenant]]` tables, read at start (`load_tenants`) and again whenever it changes
(reload.py):

    [[tenant]]
    name = "acme"                          # [a-z0-9][a-z0-9_-]{0,62}
    token_sha256 = "<64 hex digits>"       # sha256 of its bearer token; optional with JWT
    workspace_root = "/srv/acme"           # an existing directory: every session's workspace lies in it
    tools_dirs = ["/srv/tools/acme"]       # optional: its own tools, beside the shared ones
    grants_file = "/etc/llama-agent/acme-grants.toml"  # optional
    [tenant.limits]                        # optional, each a positive whole number
    max_sessions = 8
    max_concurrent_runs = 2
    calls_per_minute = 120
    tokens_per_day = 200000

The file is the operator's, but it is read as any input is: bounded, every key known, every value
checked, names validated before they become paths. Each error names the file and the key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from llama_agent.runtime.storage.files import read_regular_file

MAX_TENANTS_FILE_BYTES = 1024 * 1024
TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
TENANT_KEYS = frozenset({"name", "token_sha256", "workspace_root", "tools_dirs", "grants_file", "limits"})
GRANTS_FILE_NAME = "grants.toml"


class TenantsFileError(ValueError):
    """A tenants file that cannot be used; the message names the file and the key at fault."""


@dataclass(frozen=True)
class TenantLimits:
    """A tenant's quotas (services/tenants/quotas.py enforces them)."""

    max_sessions: int = 16
    max_concurrent_runs: int = 2
    calls_per_minute: int = 600
    tokens_per_day: int = 1_000_000


LIMIT_KEYS = frozenset(field.name for field in fields(TenantLimits))


@dataclass(frozen=True)
class Tenant:
    name: str
    token_sha256: str | None  # lowercase hex; None: known by JWT alone
    workspace_root: Path  # resolved: symlinks followed
    tools_dirs: tuple[Path, ...]
    grants_file: Path | None  # None: <config_dir>/tenants/<name>/grants.toml
    limits: TenantLimits

    def grants_path(self, config_dir: Path) -> Path:
        """Where this tenant's approvals of its tools' requests are kept."""
        return self.grants_file or config_dir / "tenants" / self.name / GRANTS_FILE_NAME


@dataclass(frozen=True)
class Tenants:
    path: Path
    tenants: tuple[Tenant, ...]

    def by_name(self, name: str) -> Tenant | None:
        return next((tenant for tenant in self.tenants if tenant.name == name), None)

    def __iter__(self) -> Iterator[Tenant]:
        return iter(self.tenants)

    def __len__(self) -> int:
        return len(self.tenants)


def load_tenants(path: Path) -> Tenants:
    """The tenants of `path`; TenantsFileError naming the file and the key if anything is wrong."""
    try:
        text = read_regular_file(path, MAX_TENANTS_FILE_BYTES).decode("utf-8")
        document = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise TenantsFileError(f"tenants file {path}: cannot be read: {error}") from error
    return parse_tenants(path, document)


def parse_tenants(path: Path, document: Mapping[str, Any]) -> Tenants:
    """The tenants a parsed tenants file gives (`path` is for messages and relative paths)."""
    unknown = sorted(set(document) - {"tenant"})
    if unknown:
        raise TenantsFileError(f"tenants file {path}: unknown key {unknown[0]!r} (only [[tenant]] tables)")
    tables = document.get("tenant")
    if not isinstance(tables, list) or not tables:
        raise TenantsFileError(f"tenants file {path}: no [[tenant]] table")
    tenants = tuple(_tenant(_Where(path, index), table) for index, table in enumerate(tables))
    _check_unique(path, tenants)
    return Tenants(path, tenants)


@dataclass(frozen=True)
class _Where:
    """A place in the file, for messages: `tenant[2].limits.max_sessions`."""

    path: Path
    index: int

    def error(self, key: str, problem: str) -> TenantsFileError:
        return TenantsFileError(f"tenants file {self.path}: tenant[{self.index}].{key}: {problem}")

    def relative(self, value: str) -> Path:
        """A path from the file, relative ones to the file's directory."""
        return (self.path.parent / value) if not Path(value).is_absolute() else Path(value)


def _tenant(where: _Where, table: Any) -> Tenant:
    if not isinstance(table, dict):
        raise where.error("", "must be a table")
    unknown = sorted(set(table) - TENANT_KEYS)
    if unknown:
        raise where.error(unknown[0], f"unknown key (known: {', '.join(sorted(TENANT_KEYS))})")
    name = _name(where, table.get("name"))
    workspace_root = _directory(where, "workspace_root", table.get("workspace_root"))
    tools_dirs = _tools_dirs(where, table.get("tools_dirs", []))
    grants_file = _grants_file(where, table.get("grants_file"), workspace_root, tools_dirs)
    return Tenant(
        name=name,
        token_sha256=_token_digest(where, table.get("token_sha256")),
        workspace_root=workspace_root,
        tools_dirs=tools_dirs,
        grants_file=grants_file,
        limits=_limits(where, table.get("limits", {})),
    )


def _name(where: _Where, value: Any) -> str:
    if value is None:
        raise where.error("name", "missing")
    if not isinstance(value, str) or not TENANT_NAME.fullmatch(value):
        raise where.error("name", f"{value!r} is not a tenant name ([a-z0-9][a-z0-9_-]{{0,62}})")
    return value


def _token_digest(where: _Where, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not SHA256_HEX.fullmatch(value.lower()):
        raise where.error("token_sha256", "must be 64 hexadecimal digits (sha256 of the token)")
    return value.lower()


def _directory(where: _Where, key: str, value: Any) -> Path:
    if value is None:
        raise where.error(key, "missing")
    if not isinstance(value, str) or not value or "\0" in value:
        raise where.error(key, "must be a directory's path")
    directory = where.relative(value).resolve()
    if not directory.is_dir():
        raise where.error(key, f"{value!r} is not an existing directory")
    return directory


def _tools_dirs(where: _Where, value: Any) -> tuple[Path, ...]:
    if not isinstance(value, list):
        raise where.error("tools_dirs", "must be a list of directories")
    return tuple(_directory(where, f"tools_dirs[{i}]", item) for i, item in enumerate(value))


def _grants_file(
    where: _Where, value: Any, workspace_root: Path, tools_dirs: tuple[Path, ...]
) -> Path | None:
    """An explicit grants file: never where the tenant's sessions or tools could write or drop it
    (whoever can write it approves their own tools' requests)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or "\0" in value:
        raise where.error("grants_file", "must be a file's path")
    path = where.relative(value)
    resolved = path.parent.resolve() / path.name
    for directory in (workspace_root, *tools_dirs):
        if resolved.is_relative_to(directory):
            raise where.error("grants_file", f"{value!r} lies in {directory}, which the tenant can write to")
    return resolved


def _limits(where: _Where, value: Any) -> TenantLimits:
    if not isinstance(value, dict):
        raise where.error("limits", "must be a table")
    unknown = sorted(set(value) - LIMIT_KEYS)
    if unknown:
        raise where.error(f"limits.{unknown[0]}", f"unknown key (known: {', '.join(sorted(LIMIT_KEYS))})")
    for key, number in value.items():
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise where.error(f"limits.{key}", f"must be a positive whole number, got {number!r}")
    return TenantLimits(**value)


def _check_unique(path: Path, tenants: tuple[Tenant, ...]) -> None:
    names: dict[str, int] = {}
    digests: dict[str, int] = {}
    for index, tenant in enumerate(tenants):
        where = _Where(path, index)
        if tenant.name in names:
            raise where.error("name", f"{tenant.name!r} is also tenant[{names[tenant.name]}]'s name")
        names[tenant.name] = index
        if tenant.token_sha256 is not None:
            if tenant.token_sha256 in digests:
                raise where.error("token_sha256", f"the same as tenant[{digests[tenant.token_sha256]}]'s")
            digests[tenant.token_sha256] = index
