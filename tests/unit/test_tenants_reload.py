"""The tenants file reloaded: what a change means tenant by tenant, a file read only once it has
settled, a bad file that keeps the last good tenants (one error, not one a poll), and new limits
that hold for a tenant's quota at once."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from llama_agent.common.errors import QuotaExceeded
from llama_agent.services.tenants.auth import TokenVerifier, token_digest
from llama_agent.services.tenants.config import (
    Tenant,
    TenantLimits,
    Tenants,
    TenantsFileError,
    load_tenants,
)
from llama_agent.services.tenants.quotas import TenantQuota
from llama_agent.services.tenants.reload import TenantsChange, TenantsReloader, tenants_change


def table(root: Path, name: str, token: str = "", extra: str = "") -> str:
    digest = token_digest(token or f"{name}-token")
    return f'[[tenant]]\nname = "{name}"\ntoken_sha256 = "{digest}"\nworkspace_root = "{root}"\n{extra}'


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, Path]:
    made = {name: tmp_path / name for name in ("one", "two", "three", "elsewhere", "tools")}
    for path in made.values():
        path.mkdir()
    return made


def load(tmp_path: Path, text: str) -> Tenants:
    path = tmp_path / "tenants.toml"
    path.write_text(text)
    return load_tenants(path)


def names(tenants: tuple[Tenant, ...]) -> list[str]:
    return sorted(tenant.name for tenant in tenants)


def test_a_change_is_sorted_by_what_it_needs(tmp_path: Path, roots: dict[str, Path]) -> None:
    old = load(
        tmp_path,
        table(roots["one"], "kept")
        + table(roots["one"], "token")
        + table(roots["one"], "limits")
        + table(roots["one"], "moved")
        + table(roots["one"], "tools")
        + table(roots["one"], "gone"),
    )
    new = load(
        tmp_path,
        table(roots["one"], "kept")
        + table(roots["one"], "token", token="rotated")
        + table(roots["one"], "limits", extra="[tenant.limits]\nmax_sessions = 1\n")
        + table(roots["elsewhere"], "moved")
        + table(roots["one"], "tools", extra=f'tools_dirs = ["{roots["tools"]}"]\n')
        + table(roots["two"], "new"),
    )
    change = tenants_change(old, new)
    assert names(change.added) == ["new"]
    assert names(change.removed) == ["gone"]
    assert names(change.rebuilt) == ["moved", "tools"]  # their cores are built from what changed
    assert names(change.updated) == ["limits", "token"]  # their cores are kept
    assert change.tenants is new
    assert not tenants_change(new, load(tmp_path, (tmp_path / "tenants.toml").read_text()))


class Listener:
    def __init__(self, fail: bool = False) -> None:
        self.changes: list[TenantsChange] = []
        self.fail = fail

    def __call__(self, change: TenantsChange) -> None:
        if self.fail:
            raise RuntimeError("cannot open its core")
        self.changes.append(change)


def reloader(path: Path, listener: Listener) -> TenantsReloader:
    verifier = TokenVerifier(load_tenants(path))
    return TenantsReloader(path, verifier.tenants, listener, verifier.check)


def rewrite(path: Path, text: str) -> None:
    """A change the signature shows even within one tick of the clock (the size differs, or the
    inode: written beside and renamed over, as a ConfigMap update does)."""
    staged = path.with_suffix(".new")
    staged.write_text(text)
    os.replace(staged, path)


def test_a_change_is_read_once_it_has_settled_and_taken_once(tmp_path: Path, roots: dict[str, Path]) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(table(roots["one"], "one"))
    listener = Listener()
    watching = reloader(path, listener)
    assert watching.poll() is None  # the file as read at start: nothing to do
    rewrite(path, table(roots["one"], "one") + table(roots["two"], "two"))
    assert watching.poll() is None  # just changed: it may still be being written
    change = watching.poll()
    assert change is not None and names(change.added) == ["two"]
    assert [names(c.added) for c in listener.changes] == [["two"]]
    assert watching.current is change.tenants
    for _ in range(3):  # read again while recent, but nothing more to take
        assert watching.poll() is None
    assert len(listener.changes) == 1


def test_a_bad_file_keeps_the_last_good_tenants_with_one_error(
    tmp_path: Path, roots: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(table(roots["one"], "one"))
    listener = Listener()
    watching = reloader(path, listener)
    good = watching.current
    rewrite(path, table(roots["one"], "one") + '[[tenant]]\nname = "Bad Name"\n')
    with caplog.at_level(logging.ERROR):
        for _ in range(5):
            assert watching.poll() is None
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert "tenant[1].name" in errors[0] and str(path) in errors[0] and "last good" in errors[0]
    assert watching.current is good and not listener.changes
    # Fixed: taken.
    rewrite(path, table(roots["one"], "one") + table(roots["two"], "two"))
    watching.poll()
    assert watching.poll() is not None and names(listener.changes[0].added) == ["two"]


def test_a_tenant_without_a_token_is_refused_without_jwt(tmp_path: Path, roots: dict[str, Path]) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(table(roots["one"], "one"))
    listener = Listener()
    watching = reloader(path, listener)
    tokenless = f'[[tenant]]\nname = "two"\nworkspace_root = "{roots["two"]}"\n'
    rewrite(path, table(roots["one"], "one") + tokenless)
    watching.poll()
    assert watching.poll() is None and not listener.changes


def test_a_missing_file_keeps_the_tenants(tmp_path: Path, roots: dict[str, Path]) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(table(roots["one"], "one"))
    listener = Listener()
    watching = reloader(path, listener)
    good = watching.current
    path.unlink()
    watching.poll()
    assert watching.poll() is None and watching.current is good


def test_a_change_that_cannot_be_applied_is_not_taken(tmp_path: Path, roots: dict[str, Path]) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(table(roots["one"], "one"))
    watching = reloader(path, Listener(fail=True))
    good = watching.current
    rewrite(path, table(roots["one"], "one") + table(roots["two"], "two"))
    watching.poll()
    assert watching.poll() is None and watching.current is good


def test_new_limits_hold_for_the_sessions_already_counted() -> None:
    quota = TenantQuota(TenantLimits(max_sessions=3))
    releases = [quota.open_session(), quota.open_session()]
    quota.set_limits(TenantLimits(max_sessions=2))
    with pytest.raises(QuotaExceeded):
        quota.open_session()
    releases[0]()
    releases.append(quota.open_session())  # one left the two: one may come
    assert quota.usage().sessions == 2


def test_the_verifier_checks_a_set_as_it_checks_the_first(tmp_path: Path, roots: dict[str, Path]) -> None:
    verifier = TokenVerifier(load(tmp_path, table(roots["one"], "one")))
    without_token = load(tmp_path, f'[[tenant]]\nname = "two"\nworkspace_root = "{roots["two"]}"\n')
    with pytest.raises(TenantsFileError, match="token_sha256: missing"):
        verifier.check(without_token)
