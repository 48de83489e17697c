"""The grants file (grants.toml): its format, how it is written, what is not trusted, and what a
request's digest binds."""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

import pytest

from daemon.runtime.grants_file import (
    Approval,
    ApprovalKey,
    GrantsFileError,
    read_approvals,
    request_digest,
    update_approvals,
    write_approvals,
)
from daemon.services.approvals import GRANTS_FILE, Approvals

SHA_A = "a" * 64
SHA_B = "b" * 64


def approval(name: str = "echo", component: str = SHA_A, policy: str = SHA_B, path: str = "") -> Approval:
    return Approval(ApprovalKey(name, component, policy), path, "2025-01-01T00:00:00+00:00")


def test_approvals_survive_a_round_trip_whatever_the_path_holds(tmp_path: Path) -> None:
    file = tmp_path / "config" / "grants.toml"
    written = (
        approval("echo", path='/tools/"quoted" \\ back\nslash\x7f é 😀'),
        approval("read_file", SHA_B, SHA_A, "/tools/read_file.wasm"),
    )
    write_approvals(file, written)
    assert read_approvals(file) == written


def test_a_missing_file_approves_nothing(tmp_path: Path) -> None:
    assert read_approvals(tmp_path / "absent" / "grants.toml") == ()


def test_the_file_is_private_and_its_directory_created_private(tmp_path: Path) -> None:
    file = tmp_path / "new" / "config" / "grants.toml"
    old_umask = os.umask(0o002)  # a lax umask must not make either readable by others
    try:
        write_approvals(file, (approval(),))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(file.parent.stat().st_mode) == 0o700


def test_a_failed_write_leaves_the_old_file_whole_and_no_staging_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "grants.toml"
    write_approvals(file, (approval("old"),))
    before = file.read_bytes()

    def no_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", no_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_approvals(file, (approval("new"),))
    assert file.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grants.toml"]


def test_a_write_replaces_the_file_by_renaming_a_new_one(tmp_path: Path) -> None:
    file = tmp_path / "grants.toml"
    write_approvals(file, (approval("old"),))
    inode = file.stat().st_ino
    write_approvals(file, (approval("new"),))
    assert file.stat().st_ino != inode  # a new file was renamed over it: never truncated in place
    assert [a.key.name for a in read_approvals(file)] == ["new"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[approved]\n", "not valid TOML"),
        ("approved = 3\n", "must be an array of tables"),
        ("colour = 'red'\n", "unknown setting 'colour'"),
        (
            '[[approved]]\nname = "echo"\ncomponent_sha256 = "abc"\npolicy_sha256 = "abc"\n',
            "64 lowercase hex",
        ),
        (f'[[approved]]\ncomponent_sha256 = "{SHA_A}"\npolicy_sha256 = "{SHA_B}"\n', "'name' must be"),
        (b"\xff\xfe".decode("latin-1"), "cannot read"),
    ],
)
def test_malformed_files_are_refused_with_the_reason(tmp_path: Path, text: str, fragment: str) -> None:
    file = tmp_path / "grants.toml"
    file.write_bytes(text.encode("latin-1") if text.startswith("\xff") else text.encode())
    file.chmod(0o600)
    with pytest.raises(GrantsFileError, match=fragment):
        read_approvals(file)


def test_a_file_others_may_write_is_not_trusted(tmp_path: Path) -> None:
    file = tmp_path / "grants.toml"
    write_approvals(file, (approval(),))
    file.chmod(0o666)
    with pytest.raises(GrantsFileError, match="writable by others"):
        read_approvals(file)


def test_a_malformed_file_is_logged_and_approves_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "grants.toml"
    write_approvals(file, (approval(),))
    approvals = Approvals(file)
    approvals.refresh()
    assert approvals.granted_by(None, SHA_A, SHA_B) == GRANTS_FILE
    file.write_text("not [ toml")
    with caplog.at_level(logging.ERROR):
        approvals.refresh()
    assert approvals.granted_by(None, SHA_A, SHA_B) is None
    assert "nothing in it is approved" in caplog.text
    with pytest.raises(GrantsFileError):  # and nothing overwrites what the person may be editing
        approvals.revoke("echo")
    assert file.read_text() == "not [ toml"


def test_an_approval_binds_the_name_the_component_and_the_request(tmp_path: Path) -> None:
    file = tmp_path / "grants.toml"
    write_approvals(file, (approval("echo", SHA_A, SHA_B),))
    approvals = Approvals(file)
    approvals.refresh()
    assert approvals.granted_by({"echo"}, SHA_A, SHA_B) == GRANTS_FILE
    assert approvals.granted_by({"other"}, SHA_A, SHA_B) is None
    assert approvals.granted_by({"echo"}, "c" * 64, SHA_B) is None  # a replaced component
    assert approvals.granted_by({"echo"}, SHA_A, "c" * 64) is None  # a changed request


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    file = tmp_path / "grants.toml"
    approvals = Approvals(file)
    approvals.refresh()
    assert approvals.granted_by(None, SHA_A, SHA_B) is None
    write_approvals(file, (approval(),))
    approvals.refresh()
    assert approvals.granted_by(None, SHA_A, SHA_B) == GRANTS_FILE
    write_approvals(file, ())
    approvals.refresh()
    assert approvals.granted_by(None, SHA_A, SHA_B) is None


def test_concurrent_writers_lose_no_approval(tmp_path: Path) -> None:
    file = tmp_path / "grants.toml"
    names = [f"tool{i}" for i in range(16)]

    def add(name: str) -> None:
        update_approvals(file, lambda approvals: (*approvals, approval(name)))

    threads = [threading.Thread(target=add, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.key.name for a in read_approvals(file)) == sorted(names)


def test_revoking_removes_every_approval_of_that_name_only(tmp_path: Path) -> None:
    file = tmp_path / "grants.toml"
    write_approvals(file, (approval("echo"), approval("echo", SHA_B, SHA_B), approval("calc")))
    assert Approvals(file).revoke("echo") == 2
    assert [a.key.name for a in read_approvals(file)] == ["calc"]
    assert Approvals(file).revoke("echo") == 0


# -- the request's digest ------------------------------------------------------------------------


def test_the_digest_is_canonical_json_of_the_document(tmp_path: Path) -> None:
    one = {"env": ["A", "B"], "timeout_seconds": 30}
    same_in_other_order = {"timeout_seconds": 30, "env": ["A", "B"]}
    assert request_digest(one, tmp_path) == request_digest(same_in_other_order, tmp_path)
    assert request_digest(one, tmp_path) != request_digest({**one, "timeout_seconds": 31}, tmp_path)
    assert request_digest(one, tmp_path) != request_digest({**one, "env": ["B", "A"]}, tmp_path)


def test_relative_directories_are_bound_to_where_they_lead(tmp_path: Path) -> None:
    (tmp_path / "a" / "data").mkdir(parents=True)
    (tmp_path / "b" / "data").mkdir(parents=True)
    relative = {"dirs": [{"host": "data", "guest": "/data"}]}
    assert request_digest(relative, tmp_path / "a") != request_digest(relative, tmp_path / "b")
    absolute = {"dirs": [{"host": str(tmp_path / "a" / "data"), "guest": "/data"}]}
    assert request_digest(absolute, tmp_path / "a") == request_digest(absolute, tmp_path / "b")
    assert request_digest(relative, tmp_path / "a") == request_digest(absolute, tmp_path / "b")


def test_a_symlinked_directory_is_bound_to_its_target(tmp_path: Path) -> None:
    for name in ("safe", "secret"):
        (tmp_path / name).mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "safe")
    document = {"dirs": [{"host": "link", "guest": "/data"}]}
    before = request_digest(document, tmp_path)
    link.unlink()
    link.symlink_to(tmp_path / "secret")
    assert request_digest(document, tmp_path) != before
