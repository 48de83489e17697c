"""Policy files parsed directly: every setting, its bounds, and the errors that name the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from llama_agent.runtime.tools.limits import MIB, Limits
from llama_agent.runtime.tools.policy import (
    WORKSPACE_GUEST,
    Grants,
    PolicyError,
    Protected,
    parse_policy,
    policy_path,
    read_policy,
)

DEFAULTS = Limits(timeout_seconds=10.0, memory_bytes=256 * MIB, output_bytes=MIB)


def parse(document: dict[str, Any], base: Path, workspace: Path | None = None) -> Grants:
    return parse_policy(document, base, DEFAULTS, source="tool.policy.toml", workspace=workspace)


def test_an_empty_policy_grants_nothing_and_keeps_the_defaults(tmp_path: Path) -> None:
    assert parse({}, tmp_path) == Grants(DEFAULTS, (), ())


def test_limits_are_read_in_their_units(tmp_path: Path) -> None:
    grants = parse({"timeout_seconds": 2.5, "memory_mib": 64, "output_kib": 16, "memories": 2}, tmp_path)
    assert grants.limits == Limits(
        timeout_seconds=2.5, memory_bytes=64 * MIB, output_bytes=16 * 1024, memories=2
    )


@pytest.mark.parametrize("memories", [0, 17, 1.5, True, "2"])
def test_the_memory_count_is_a_small_whole_number(tmp_path: Path, memories: Any) -> None:
    with pytest.raises(PolicyError, match="'memories' must be a whole number from 1 to 16"):
        parse({"memories": memories}, tmp_path)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("timeout_seconds", 0),
        ("timeout_seconds", 3601),
        ("timeout_seconds", "10"),
        ("timeout_seconds", True),  # TOML booleans are not numbers here
        ("memory_mib", 0.5),
        ("memory_mib", 65537),
        ("output_kib", 0),
    ],
)
def test_limits_out_of_bounds_or_of_the_wrong_type_are_refused(tmp_path: Path, key: str, value: Any) -> None:
    with pytest.raises(PolicyError, match=f"tool.policy.toml: '{key}' must be a number from"):
        parse({key: value}, tmp_path)


def test_directories_resolve_against_the_policy_files_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    grants = parse({"dirs": [{"host": "data", "guest": "/data", "mode": "rw"}]}, tmp_path)
    [granted] = grants.dirs
    assert (granted.host, granted.guest, granted.mode) == ((tmp_path / "data").resolve(), "/data", "rw")
    read_only = parse({"dirs": [{"host": str(tmp_path / "data"), "guest": "/d"}]}, tmp_path)
    assert read_only.dirs[0].mode == "ro"


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"host": "missing", "guest": "/m"}, "does not exist"),
        ({"host": "data", "guest": "relative"}, "must be absolute"),
        ({"host": "data", "guest": "/d", "mode": "wx"}, "mode must be 'ro' or 'rw'"),
        ({"host": "data"}, "needs 'host' and 'guest'"),
        ({"host": "data", "guest": "/d", "recursive": True}, "unknown [[dirs]] setting 'recursive'"),
        ("data", "needs 'host' and 'guest'"),
    ],
)
def test_bad_directory_grants_are_refused(tmp_path: Path, entry: Any, fragment: str) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(PolicyError) as raised:
        parse({"dirs": [entry]}, tmp_path)
    assert fragment in str(raised.value)


def test_dirs_must_be_an_array_of_tables(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"\[\[dirs\]\]"):
        parse({"dirs": {"host": ".", "guest": "/d"}}, tmp_path)


@pytest.mark.parametrize("env", [["HOME", ""], "HOME", [1]])
def test_env_must_be_a_list_of_names(tmp_path: Path, env: Any) -> None:
    with pytest.raises(PolicyError, match="list of variable names"):
        parse({"env": env}, tmp_path)


def test_env_names_are_kept_in_order(tmp_path: Path) -> None:
    assert parse({"env": ["LANG", "TZ"]}, tmp_path).env == ("LANG", "TZ")


@pytest.mark.parametrize("network", [True, ["example.org"], "yes"])
def test_network_grants_are_refused(tmp_path: Path, network: Any) -> None:
    with pytest.raises(PolicyError, match="network grants are not supported"):
        parse({"network": network}, tmp_path)
    assert parse({"network": False}, tmp_path).to_wire()["network"] is False


def test_unknown_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="unknown setting 'timeout'"):
        parse({"timeout": 3}, tmp_path)


@pytest.mark.parametrize("mode", ["ro", "rw"])
def test_the_workspace_is_granted_first_when_there_is_one(tmp_path: Path, mode: str) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (tmp_path / "data").mkdir()
    document = {"workspace": mode, "dirs": [{"host": "data", "guest": "/data"}]}
    grants = parse(document, tmp_path, workspace=workspace)
    first = grants.dirs[0]
    assert (first.host, first.guest, first.mode) == (workspace.resolve(), WORKSPACE_GUEST, mode)
    assert grants.dirs[1].guest == "/data"
    assert [d.guest for d in parse(document, tmp_path).dirs] == ["/data"]  # no workspace: not granted


def test_the_workspace_mode_is_checked(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="workspace must be 'ro' or 'rw'"):
        parse({"workspace": "yes"}, tmp_path)


def test_policy_files_sit_beside_their_tool() -> None:
    assert policy_path(Path("/tools/echo.wasm")) == Path("/tools/echo.policy.toml")


def test_read_policy_reports_toml_errors_and_unreadable_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.policy.toml"
    broken.write_text("timeout_seconds = = 3")
    with pytest.raises(PolicyError, match="is not valid TOML"):
        read_policy(broken, DEFAULTS)
    binary = tmp_path / "binary.policy.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(PolicyError, match="cannot read"):
        read_policy(binary, DEFAULTS)
    fine = tmp_path / "fine.policy.toml"
    fine.write_text('timeout_seconds = 1\nenv = ["TZ"]\n')
    assert read_policy(fine, DEFAULTS).env == ("TZ",)


def test_a_grant_records_the_directory_it_names_and_notices_a_swap(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "elsewhere").mkdir()
    [grant] = parse({"dirs": [{"host": "data", "guest": "/data"}]}, tmp_path).dirs
    assert grant.still_granted()
    (tmp_path / "data").rename(tmp_path / "old-data")
    (tmp_path / "data").symlink_to(tmp_path / "elsewhere")  # a link now stands where it was
    assert not grant.still_granted()
    (tmp_path / "data").unlink()
    (tmp_path / "data").mkdir()  # a new directory with the old name is not the one granted
    assert not grant.still_granted()
    (tmp_path / "data").rmdir()
    assert not grant.still_granted()


def test_reading_the_policy_again_pins_the_directory_now_there(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    document = {"dirs": [{"host": "data", "guest": "/data"}]}
    [before] = parse(document, tmp_path).dirs
    (tmp_path / "data").rename(tmp_path / "old")
    (tmp_path / "new").mkdir()
    (tmp_path / "new").rename(tmp_path / "data")  # another directory under the granted name
    [after] = parse(document, tmp_path).dirs
    assert not before.still_granted()
    assert after.still_granted()
    assert after != before  # so the tool is announced as changed, and served with the new grant


def test_a_directory_above_the_grant_swapped_for_a_link_is_noticed(tmp_path: Path) -> None:
    (tmp_path / "outer" / "inner").mkdir(parents=True)
    [grant] = parse({"dirs": [{"host": "outer/inner", "guest": "/in"}]}, tmp_path).dirs
    (tmp_path / "outer").rename(tmp_path / "moved")
    (tmp_path / "outer").symlink_to(tmp_path / "moved")  # same inode at the end, through a link
    assert not grant.still_granted()


PROTECTED_CASES = [
    ({"host": "/", "guest": "/root"}, "ro", "would give away /"),
    ({"host": "home", "guest": "/home"}, "ro", "would give away"),
    ({"host": ".", "guest": "/all"}, "ro", "would give away"),  # above $HOME
    ({"host": "workspace/tools", "guest": "/t"}, "rw", "would let the tool rewrite"),
    ({"host": "workspace", "guest": "/w"}, "rw", "would let the tool rewrite"),  # above the tools
    ({"host": "workspace/tools/sub", "guest": "/t"}, "rw", "would let the tool rewrite"),  # inside
    ({"host": "cache", "guest": "/c"}, "rw", "would let the tool rewrite"),
    ({"host": "cache/components", "guest": "/c"}, "rw", "would let the tool rewrite"),  # inside
]


@pytest.mark.parametrize(("entry", "mode", "fragment"), PROTECTED_CASES)
def test_grants_over_home_root_tools_or_the_cache_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: dict[str, str], mode: str, fragment: str
) -> None:
    for name in ("home", "workspace/tools/sub", "cache/components"):
        (tmp_path / name).mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    protected = Protected.for_daemon([tmp_path / "workspace" / "tools"], tmp_path / "cache")
    document = {"dirs": [{**entry, "mode": mode}]}
    with pytest.raises(PolicyError, match=fragment):
        parse_policy(document, tmp_path, DEFAULTS, "p.toml", protected=protected)


def test_reading_a_tools_directory_and_writing_beside_it_are_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("home", "tools", "cache", "data"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    protected = Protected.for_daemon([tmp_path / "tools"], tmp_path / "cache")
    document = {
        "dirs": [
            {"host": "tools", "guest": "/tools", "mode": "ro"},
            {"host": "data", "guest": "/data", "mode": "rw"},
            {"host": "home/..", "guest": "/x", "mode": "ro"},
        ]
    }
    with pytest.raises(PolicyError):  # home/.. is tmp_path: above $HOME
        parse_policy(document, tmp_path, DEFAULTS, "p.toml", protected=protected)
    document["dirs"].pop()
    grants = parse_policy(document, tmp_path, DEFAULTS, "p.toml", protected=protected)
    assert [d.guest for d in grants.dirs] == ["/tools", "/data"]


def test_a_read_write_workspace_that_holds_the_tools_is_refused(tmp_path: Path) -> None:
    workspace = tmp_path / "repo"
    (workspace / "tools").mkdir(parents=True)
    protected = Protected.for_daemon([workspace / "tools"], tmp_path / "cache")
    with pytest.raises(PolicyError, match=f"read-write grant of {workspace.resolve()}"):
        parse_policy(
            {"workspace": "rw"}, tmp_path, DEFAULTS, "p.toml", workspace=workspace, protected=protected
        )
    read_only = parse_policy(
        {"workspace": "ro"}, tmp_path, DEFAULTS, "p.toml", workspace=workspace, protected=protected
    )
    assert read_only.dirs[0].mode == "ro"


def test_no_grant_makes_the_config_directory_writable(tmp_path: Path) -> None:
    config = tmp_path / "home-config" / "llama-agent"
    config.mkdir(parents=True)
    protected = Protected.for_daemon([tmp_path / "tools"], tmp_path / "cache", config)
    for host in (config, config.parent):
        with pytest.raises(PolicyError, match=f"would let the tool rewrite {config}"):
            parse_policy(
                {"dirs": [{"host": str(host), "guest": "/c", "mode": "rw"}]},
                tmp_path,
                DEFAULTS,
                "p.toml",
                protected=protected,
            )
        readable = parse_policy(
            {"dirs": [{"host": str(host), "guest": "/c"}]}, tmp_path, DEFAULTS, "p.toml", protected=protected
        )
        assert readable.dirs[0].mode == "ro"


def test_a_tenants_grants_stay_inside_its_root_and_get_no_environment(tmp_path: Path) -> None:
    root, other = tmp_path / "root", tmp_path / "other"
    (root / "project").mkdir(parents=True)
    other.mkdir()
    (root / "escape").symlink_to(other)
    tenant = Protected().within(root)

    def parse_for_tenant(document: dict[str, Any], workspace: Path | None = None) -> Grants:
        return parse_policy(document, tmp_path, DEFAULTS, "t.policy.toml", workspace, protected=tenant)

    inside = parse_for_tenant({"dirs": [{"host": str(root / "project"), "guest": "/p"}]})
    assert inside.dirs[0].host == (root / "project").resolve()
    assert parse_for_tenant({"workspace": "rw"}, workspace=root).dirs[0].host == root.resolve()
    for outside in (other, root / "escape", tmp_path):  # another's, through a link, above it
        with pytest.raises(PolicyError, match="outside the tenant's workspace root"):
            parse_for_tenant({"dirs": [{"host": str(outside), "guest": "/o"}]})
    with pytest.raises(PolicyError, match="outside the tenant's workspace root"):
        parse_for_tenant({"workspace": "ro"}, workspace=other)
    with pytest.raises(PolicyError, match="no environment variables"):
        parse_for_tenant({"env": ["HOME"]})
    # Outside a service nothing changes.
    assert parse({"env": ["HOME"], "dirs": [{"host": str(other), "guest": "/o"}]}, tmp_path).env == ("HOME",)
