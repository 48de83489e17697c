"""The grants file (grants.toml): its format, how it is written, what is not trusted, and what a
request's digest binds."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import stat
import threading
from pathlib import Path

import pytest
from llama_agent.runtime.tools.grants_file import (
    MAX_GRANTS_FILE_BYTES,
    Approval,
    ApprovalKey,
    GrantsFileError,
    read_approvals,
    request_digest,
    update_approvals,
    write_approvals,
)
from llama_agent.services.consent.approvals import GRANTS_FILE, Approvals

from tests.unsafe_files import OTHER_UID, give_to_another_group, give_to_another_user, make_device

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


# -- a grants file another user, or a tool, could have written --------------------------------------


def test_a_symlinked_grants_file_is_not_trusted_nor_written_through(tmp_path: Path) -> None:
    """The dotfiles habit: grants.toml a link into a directory a tool may be granted for writing.
    Protecting the config directory does not protect where the link leads."""
    config, workspace = tmp_path / "config", tmp_path / "workspace"
    workspace.mkdir()
    write_approvals(workspace / "grants.toml", (approval(),))  # what a tool could write there
    config.mkdir(mode=0o700)
    (config / "grants.toml").symlink_to(workspace / "grants.toml")
    before = (workspace / "grants.toml").read_bytes()
    with pytest.raises(GrantsFileError, match="is a symbolic link") as refused:
        read_approvals(config / "grants.toml")
    assert "Replace the link with the file itself: cp --remove-destination" in str(refused.value)
    for write in (
        lambda: write_approvals(config / "grants.toml", (approval("other"),)),
        lambda: update_approvals(config / "grants.toml", lambda approvals: (*approvals, approval("x"))),
    ):
        with pytest.raises(GrantsFileError, match=r"(not written|not trusted): .* is a symbolic link"):
            write()
    assert (config / "grants.toml").is_symlink()  # neither replaced nor written through
    assert (workspace / "grants.toml").read_bytes() == before


def test_a_dangling_link_is_refused_not_taken_for_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "grants.toml").symlink_to(tmp_path / "nowhere.toml")
    with pytest.raises(GrantsFileError, match="is a symbolic link"):
        read_approvals(tmp_path / "grants.toml")


def test_a_hard_linked_grants_file_is_not_trusted_nor_written(tmp_path: Path) -> None:
    """Another name of the same file, in a workspace, is the same file a tool could rewrite."""
    config, workspace = tmp_path / "config", tmp_path / "workspace"
    workspace.mkdir()
    write_approvals(config / "grants.toml", (approval(),))
    os.link(config / "grants.toml", workspace / "also.toml")
    with pytest.raises(GrantsFileError, match="has 2 hard links") as refused:
        read_approvals(config / "grants.toml")
    assert "Give it a name of its own: cp " in str(refused.value)
    with pytest.raises(GrantsFileError, match="has 2 hard links"):
        write_approvals(config / "grants.toml", ())
    assert (config / "grants.toml").stat().st_ino == (workspace / "also.toml").stat().st_ino
    (workspace / "also.toml").unlink()  # a name of its own again: trusted
    assert read_approvals(config / "grants.toml") == (approval(),)


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_grants_file_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    file = tmp_path / "grants.toml"
    if kind == "fifo":
        os.mkfifo(file, 0o600)  # opening it to read would wait for a writer
    elif kind == "device":
        make_device(file)
    else:
        file.mkdir(mode=0o700)
    raised: list[BaseException] = []

    def read() -> None:
        try:
            read_approvals(file)
        except BaseException as error:
            raised.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading blocked"
    [error] = raised
    assert isinstance(error, GrantsFileError)
    assert f"is not a regular file but a {kind if kind != 'fifo' else 'FIFO'}: remove it" in str(error)


def test_a_grants_file_of_another_user_is_not_trusted(tmp_path: Path) -> None:
    file = tmp_path / "grants.toml"
    write_approvals(file, (approval(),))
    give_to_another_user(file)
    with pytest.raises(GrantsFileError, match=f"belongs to another user \\(uid {OTHER_UID}\\)") as refused:
        read_approvals(file)
    assert f"chown {os.geteuid()} " in str(refused.value)


def test_an_oversized_grants_file_is_not_read(tmp_path: Path) -> None:
    file = tmp_path / "grants.toml"
    write_approvals(file, ())
    os.truncate(file, MAX_GRANTS_FILE_BYTES + 1)  # sparse: costs nothing to make
    with pytest.raises(GrantsFileError, match="bytes; the limit is"):
        read_approvals(file)


def config_directory(tmp_path: Path, case: str) -> Path:
    """A config directory holding a grants file that approves `approval()`, made unsafe by `case`."""
    above = tmp_path / "above"
    config = above / "llama-agent"
    write_approvals(config / "grants.toml", (approval(),))
    if case == "a link":
        real = tmp_path / "real"
        config.rename(real)
        config.symlink_to(real)
    elif case == "another user's":
        give_to_another_user(config)
    elif case == "writable by others":
        config.chmod(0o777)
    elif case == "writable by another group":
        give_to_another_group(config)  # a group of no one here, not the person's own
        config.chmod(0o770)
    elif case == "below a directory others may write":
        above.chmod(0o777)
    elif case == "below another user's directory":
        give_to_another_user(above)
    elif case == "through another user's link in a shared directory":
        shared = tmp_path / "shared"
        shared.mkdir()
        shared.chmod(0o1777)  # like /tmp: anyone may add entries, only an entry's owner may replace it
        (shared / "link").symlink_to(above)
        give_to_another_user(shared / "link")
        return shared / "link" / "llama-agent"
    return config


@pytest.mark.parametrize(
    "case",
    [
        "a link",
        "another user's",
        "writable by others",
        "writable by another group",
        "below a directory others may write",
        "below another user's directory",
        "through another user's link in a shared directory",
    ],
)
def test_a_config_directory_someone_else_could_change_is_not_trusted(tmp_path: Path, case: str) -> None:
    file = config_directory(tmp_path, case) / "grants.toml"
    words = {
        "a link": "is a symbolic link (to {real}): only the directory itself is protected from the "
        "tools, not where a link leads. Set LLAMA_AGENT_CONFIG_DIR to the directory itself: {real}",
        "another user's": "belongs to another user",
        "writable by others": "is writable by others (mode 777)",
        "writable by another group": "is writable by others (mode 770)",
        "below a directory others may write": "on the way to",
        "below another user's directory": "on the way to",
        "through another user's link in a shared directory": "in the shared directory",
    }[case]
    with pytest.raises(GrantsFileError) as refused:
        read_approvals(file)
    assert words.format(real=tmp_path / "real") in str(refused.value)
    with pytest.raises(GrantsFileError, match=r"not (written|trusted)"):
        update_approvals(file, lambda approvals: ())


@pytest.mark.parametrize("case", ["in a sticky shared directory", "group-writable, the owner's own group"])
def test_a_config_directory_only_the_person_can_change_is_trusted(tmp_path: Path, case: str) -> None:
    if case == "in a sticky shared directory":
        shared = tmp_path / "shared"
        shared.mkdir()
        shared.chmod(0o1777)
        config = shared / "llama-agent"
    else:  # umask 002 with "user private groups": the group holds the person alone
        user, group = pwd.getpwuid(os.geteuid()), grp.getgrgid(os.getegid())
        if group.gr_name != user.pw_name or not set(group.gr_mem) <= {user.pw_name}:
            pytest.skip("the person's group here is not theirs alone")
        config = tmp_path / "llama-agent"
    write_approvals(config / "grants.toml", (approval(),))
    if case != "in a sticky shared directory":
        os.chown(config, os.geteuid(), os.getegid())
        config.chmod(0o770)
    assert read_approvals(config / "grants.toml") == (approval(),)


def test_the_daemon_notices_a_trusted_file_turning_into_a_link_or_writable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Re-read whenever the answer could change, not only when the content does."""
    file = tmp_path / "grants.toml"
    write_approvals(file, (approval(),))
    approvals = Approvals(file)
    approvals.refresh()
    assert approvals.granted_by(None, SHA_A, SHA_B) == GRANTS_FILE
    file.chmod(0o666)  # same size, same mtime
    with caplog.at_level(logging.ERROR):
        approvals.refresh()
    assert approvals.granted_by(None, SHA_A, SHA_B) is None
    assert "writable by others" in caplog.text

    file.chmod(0o600)
    approvals.refresh()
    assert approvals.granted_by(None, SHA_A, SHA_B) == GRANTS_FILE
    elsewhere = tmp_path / "elsewhere.toml"
    write_approvals(elsewhere, (approval(),))
    os.utime(elsewhere, ns=(file.stat().st_atime_ns, file.stat().st_mtime_ns))
    file.unlink()
    file.symlink_to(elsewhere)
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        approvals.refresh()
    assert approvals.granted_by(None, SHA_A, SHA_B) is None
    assert "is a symbolic link" in caplog.text
