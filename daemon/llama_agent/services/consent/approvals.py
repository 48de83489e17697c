"""Who grants: a tool's policy only asks; the person approves.

A request (what `NAME.policy.toml` asks beyond the defaults) applies when the tool is in a trusted
directory, when the grants file approves it (`llama-agent tools grant NAME`, or "Always allow"), or
when the person allowed it in the editor for this daemon process ("Allow once"). Everything here
is plain and thread-safe: the toolbox asks `Approvals` on its reconcile thread, and the server
puts `Prompts` to the client on its event loop.
"""

from __future__ import annotations

import datetime
import logging
import os
import shlex
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from llama_agent.common.text import quoted, visible
from llama_agent.runtime.tools.grants_file import (
    GRANTS_FILE_NAME,
    Approval,
    ApprovalKey,
    GrantsFileError,
    Signature,
    read_approvals,
    signature,
    update_approvals,
)
from llama_agent.runtime.tools.limits import MIB, Limits
from llama_agent.runtime.tools.metadata import TOOL_NAME_PATTERN
from llama_agent.runtime.tools.policy import WORKSPACE_GUEST, Grants

log = logging.getLogger(__name__)

TRUSTED_DIRECTORY = "trusted directory"
GRANTS_FILE = "grants file"
THIS_SESSION = "this session"

ALLOW_ONCE = "Allow once"
ALWAYS_ALLOW = "Always allow"
DENY = "Deny"
ACTIONS = (ALLOW_ONCE, ALWAYS_ALLOW, DENY)


@dataclass(frozen=True)
class PendingRequest:
    """A tool's request that nobody has approved yet: it runs with the defaults meanwhile."""

    name: str  # the tool's name; for a file that did not load with the defaults, its stem
    path: Path
    component_sha256: str
    policy_sha256: str
    grants: Grants  # what the policy asks for
    defaults: Limits
    workspace: str | None = None  # "ro" or "rw" when it asks for the client's workspace
    loaded: bool = True

    @property
    def key(self) -> ApprovalKey:
        return ApprovalKey(self.name, self.component_sha256, self.policy_sha256)


def asks_beyond_defaults(grants: Grants, defaults: Limits, workspace: str | None = None) -> bool:
    """Whether `grants` give more than the defaults: a directory, a variable, a higher limit.

    A policy that only lowers limits takes nothing from the person, so it needs no approval.
    """
    return bool(grants.dirs or grants.env or workspace is not None or raised_limits(grants.limits, defaults))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Approvals:
    """The approvals in the grants file (re-read when it changes) and those of this process."""

    def __init__(self, grants_file: Path | None = None) -> None:
        self.grants_file = grants_file
        self._lock = threading.Lock()
        self._signature: Signature | None = None
        self._saved: tuple[Approval, ...] = ()
        self._session: set[ApprovalKey] = set()
        self._denied: set[ApprovalKey] = set()

    @property
    def config_dir(self) -> Path | None:
        return self.grants_file.parent if self.grants_file else None

    def refresh(self) -> None:
        """Re-read the grants file if its size or mtime changed: a stat when it did not."""
        if self.grants_file is None:
            return
        current = signature(self.grants_file)
        with self._lock:
            if current == self._signature:
                return
            self._signature = current
            try:
                self._saved = read_approvals(self.grants_file)
            except GrantsFileError as error:
                log.error("ignoring the grants file, nothing in it is approved: %s", error)
                self._saved = ()

    def granted_by(
        self, names: Collection[str] | None, component_sha256: str, policy_sha256: str
    ) -> str | None:
        """GRANTS_FILE or THIS_SESSION if that component's request is approved under one of
        `names` (None: under any name); None if it is not."""

        def matches(key: ApprovalKey) -> bool:
            return (
                key.component_sha256 == component_sha256
                and key.policy_sha256 == policy_sha256
                and (names is None or key.name in names)
            )

        with self._lock:
            if any(matches(approval.key) for approval in self._saved):
                return GRANTS_FILE
            if any(matches(key) for key in self._session):
                return THIS_SESSION
        return None

    def allow_once(self, request: PendingRequest) -> None:
        with self._lock:
            self._session.add(request.key)
            self._denied.discard(request.key)

    def allow_always(self, request: PendingRequest) -> None:
        """Approve for this process at once, and in the grants file. Raises GrantsFileError or
        OSError if the file cannot be written (the approval for this process holds anyway)."""
        self.allow_once(request)
        self.save(request)

    def deny(self, request: PendingRequest) -> None:
        with self._lock:
            self._denied.add(request.key)

    def is_denied(self, key: ApprovalKey) -> bool:
        with self._lock:
            return key in self._denied

    def save(self, request: PendingRequest) -> Path:
        """Write the approval of `request` into the grants file, replacing this tool file's older
        ones; returns the file. Raises GrantsFileError (nothing written) or OSError."""
        file = self._writable_file()
        entry = Approval(request.key, str(request.path), _now())

        def add(approvals: tuple[Approval, ...]) -> tuple[Approval, ...]:
            kept = tuple(a for a in approvals if not _same_tool(a, entry) and a.key != entry.key)
            return (*kept, entry)

        update_approvals(file, add)
        return file

    def revoke_everywhere(self, name: str) -> int:
        """Remove every approval of `name`: this process's ("Allow once") and, if there is a grants
        file, the file's; returns how many there were. Raises GrantsFileError or OSError if the file
        cannot be written (this process's are gone anyway)."""
        with self._lock:
            kept = {key for key in self._session if key.name != name}
            removed = len(self._session) - len(kept)
            self._session = kept
        if self.grants_file is None:
            return removed
        return removed + self.revoke(name)

    def revoke(self, name: str) -> int:
        """Remove every approval of `name` from the grants file; returns how many there were."""
        file = self._writable_file()
        removed = 0

        def drop(approvals: tuple[Approval, ...]) -> tuple[Approval, ...]:
            nonlocal removed
            kept = tuple(a for a in approvals if a.key.name != name)
            removed = len(approvals) - len(kept)
            return kept

        if file.exists():
            update_approvals(file, drop)
        with self._lock:
            self._session = {key for key in self._session if key.name != name}
        return removed

    def _writable_file(self) -> Path:
        if self.grants_file is None:
            raise GrantsFileError("no grants file is in use (the config directory is a tools directory)")
        return self.grants_file


def request_id(request: PendingRequest) -> str:
    """A pending request's id for a client (the Grants view): stable while the tool's file and its
    policy are unchanged, and another one when either changes (a new request, asked anew)."""
    return f"{request.name}:{request.component_sha256[:12]}:{request.policy_sha256[:12]}"


def raised_limits(limits: Limits, defaults: Limits) -> dict[str, object]:
    """The limits in `limits` above `defaults` (what an approval gives beyond them), by field."""
    raised: dict[str, object] = {}
    for limit in fields(Limits):
        asked, default = getattr(limits, limit.name), getattr(defaults, limit.name)
        if asked != default and not (_is_number(asked) and _is_number(default) and asked < default):
            raised[limit.name] = asked
    return raised


@dataclass(frozen=True)
class ApprovedGrants:
    """A tool whose policy asks beyond the defaults, approved (`scope`: TRUSTED_DIRECTORY,
    GRANTS_FILE or THIS_SESSION): what it runs with, as a session sees it."""

    tool: str
    scope: str
    grants: Grants
    defaults: Limits
    workspace: str | None = None


@dataclass(frozen=True)
class GrantsState:
    """A session's view of the tools' requested grants: those waiting for the person (`denied`:
    the ids of those answered "Deny", which still wait), and those approved."""

    pending: tuple[PendingRequest, ...] = ()
    approved: tuple[ApprovedGrants, ...] = ()
    denied: frozenset[str] = frozenset()


def _same_tool(approval: Approval, entry: Approval) -> bool:
    return approval.key.name == entry.key.name and approval.path == entry.path


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def approvals_for(config_dir: Path, tools_dirs: Sequence[Path]) -> Approvals:
    """The daemon's approvals: the grants file in `config_dir`, if that may be used (it lies in
    none of the watched `tools_dirs`)."""
    return Approvals(grants_file_for(config_dir, tools_dirs))


def grants_file_for(config_dir: Path, watched_dirs: Sequence[Path]) -> Path | None:
    """The grants file in `config_dir`, unless that lies in a tools directory: whoever can drop
    tools there could then approve their own requests."""
    config = Path(os.path.realpath(config_dir))
    for directory in watched_dirs:
        if config.is_relative_to(os.path.realpath(directory)):
            log.error(
                "not using %s: the config directory is inside the tools directory %s; tools' "
                "requests are approved only by trusted directories and in the editor",
                config / GRANTS_FILE_NAME,
                directory,
            )
            return None
    return config_dir / GRANTS_FILE_NAME


class Prompts:
    """Which pending requests to put to the person, at most once each at a time, and what their
    answers do."""

    def __init__(self, approvals: Approvals) -> None:
        self.approvals = approvals
        self._asking: set[ApprovalKey] = set()
        # Questions the client answered with an error (it may not support them): asking on every
        # change would only repeat the error.
        self._unanswerable: set[ApprovalKey] = set()
        self._lock = threading.Lock()

    def to_ask(self, pending: Iterable[PendingRequest]) -> list[PendingRequest]:
        """The requests not yet asked, answered "Deny", approved or failed; they count as asked from
        now."""
        fresh: list[PendingRequest] = []
        with self._lock:
            for request in pending:
                key = request.key
                if key in self._asking or key in self._unanswerable or self.approvals.is_denied(key):
                    continue
                if self.approvals.granted_by({key.name}, key.component_sha256, key.policy_sha256):
                    continue
                self._asking.add(key)
                fresh.append(request)
        return fresh

    def answered(self, request: PendingRequest, action: str | None) -> bool:
        """Apply the person's answer (None: dismissed); whether the request is now approved.

        Blocking when it writes the grants file ("Always allow")."""
        approved = action in (ALLOW_ONCE, ALWAYS_ALLOW)
        if action == ALLOW_ONCE:
            self.approvals.allow_once(request)
        elif action == ALWAYS_ALLOW:
            self._allow_always(request)
        else:
            self.approvals.deny(request)
        outcome = f"approved ({action})" if approved else "denied" if action else "dismissed"
        log.info("%s's requested grants: %s", request.name, outcome)
        with self._lock:  # only now: until the answer is recorded, asking again would be early
            self._asking.discard(request.key)
        return approved

    def _allow_always(self, request: PendingRequest) -> None:
        try:
            self.approvals.allow_always(request)
        except (GrantsFileError, OSError) as error:
            log.error(
                "approved %s for this session only: cannot write the grants file: %s", request.name, error
            )

    def failed(self, request: PendingRequest, error: BaseException) -> None:
        """The question could not be asked (the client went away, or answered with an error): the
        request stays pending, and is not asked about again."""
        with self._lock:
            self._asking.discard(request.key)
            self._unanswerable.add(request.key)
        log.warning("could not ask about %s's requested grants, not asking again: %s", request.name, error)


# -- words for the person -------------------------------------------------------------------------
#
# Every string here that comes from outside (a path, a tool or file name, a variable's name) is
# shown quoted, with its control characters made visible: a directory named "\x1b[2K\rread-only
# access to /tmp/harmless" can neither erase the line nor pass for the daemon's own words. Only the
# mode words ("read-write access to") and the limits' words come from here.


def describe_request(request: PendingRequest) -> list[str]:
    """What the request asks for, one item per grant, for a prompt or the command line."""
    grants = request.grants
    items = [_describe_dir(grant.host, grant.guest, grant.mode, request.workspace) for grant in grants.dirs]
    if request.workspace is not None and not any(d.guest == WORKSPACE_GUEST for d in grants.dirs):
        items.append(
            f"{_mode_words(request.workspace)} the workspace, once one is open (at {quoted(WORKSPACE_GUEST)})"
        )
    if grants.env:
        items.append("the environment variables " + ", ".join(map(quoted, grants.env)))
    items.extend(_describe_limits(grants.limits, request.defaults))
    return items


def _describe_dir(host: Path, guest: str, mode: str, workspace: str | None) -> str:
    shown = quoted(str(host))
    what = f"the workspace {shown}" if workspace is not None and guest == WORKSPACE_GUEST else shown
    return f"{_mode_words(mode)} {what} (at {quoted(guest)})"


def _mode_words(mode: str) -> str:
    return "read-write access to" if mode == "rw" else "read-only access to"


_LIMIT_WORDS = {
    "timeout_seconds": ("time per call", 1, "s"),
    "memory_bytes": ("memory", MIB, "MiB"),
    "memories": ("linear memories", 1, ""),
    "output_bytes": ("output per stream", 1024, "KiB"),
    "write_bytes": ("bytes written per call", MIB, "MiB"),
}


def _describe_limits(limits: Limits, defaults: Limits) -> list[str]:
    items = []
    for limit in fields(Limits):
        asked, default = getattr(limits, limit.name), getattr(defaults, limit.name)
        if asked == default:
            continue
        words, unit, unit_name = _LIMIT_WORDS.get(limit.name, (limit.name, 1, ""))
        suffix = f" {unit_name}" if unit_name else ""
        items.append(f"{words}: {_amount(asked, unit)}{suffix} (default {_amount(default, unit)}{suffix})")
    return items


def _amount(value: object, unit: int) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value / unit:g}"
    return str(value)


def tool_words(name: str) -> str:
    """A tool's name for a sentence: as it is when it is a valid tool name (letters, digits, `_`,
    `-`, `.`), quoted otherwise (a file that did not load is named by its stem, which may hold
    anything)."""
    return name if TOOL_NAME_PATTERN.fullmatch(name) else quoted(name)


def grant_command(request: PendingRequest) -> str:
    """The command that approves `request`, safe to paste into a shell."""
    return f"llama-agent tools grant {visible(shlex.quote(request.name))}"


def pending_message(request: PendingRequest) -> str:
    """Why a tool runs with the defaults, for tools/list and `tools list` (display text: made
    visible, unlike the paths in `requestedGrants`)."""
    return (
        f"not approved: {quoted(request.path.name)} asks for {'; '.join(describe_request(request))}. "
        f"It runs with the defaults until approved: run `{grant_command(request)}` or approve it in "
        "the editor"
    )


def prompt_message(request: PendingRequest) -> str:
    """The question put to the person in the editor (window/showMessageRequest)."""
    loaded = "" if request.loaded else " It did not load with the defaults."
    return (
        f"llama-agent: the tool {tool_words(request.name)} ({quoted(str(request.path))}) asks for "
        f"{'; '.join(describe_request(request))}. Until approved it runs without them.{loaded}"
    )
