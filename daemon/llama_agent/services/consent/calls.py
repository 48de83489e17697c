"""Consent to a call that may write: asked the same way on every face, once the client knows of
the call, showing where the call writes and what.

A call needs the person's approval when its tool is granted a directory it may write to (the
session's workspace included), unless the person approved writes up front (`--allow-writes`) or
answered "always allow this tool in this session". The question names the tool and its file, the
directories it may write, the host paths its path arguments lead to through its grants, and the
text it would write (its string arguments, bounded, made visible). A call the person rejects, or
that nobody can be asked about, is not run: its result is an error saying so.

Every string from outside (a path, an argument, a tool's name) is made visible or quoted before a
person reads it: an escape sequence in a file name cannot redraw the question.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from llama_agent.common.text import quoted, visible
from llama_agent.runtime.storage.files import read_regular_file
from llama_agent.runtime.tools.grants_file import ApprovalKey
from llama_agent.runtime.tools.policy import WORKSPACE_GUEST, DirGrant, Grants
from llama_agent.runtime.wasm.host import LoadedTool

log = logging.getLogger(__name__)

# Characters of one argument shown where there is room (ACP's content and diff blocks) ...
MAX_SHOWN_CHARS = 20_000
# ... and in a one-line question (LSP, MCP, the terminal).
PREVIEW_CHARS = 300
# A file's current text, shown as a diff's old side, if it is no longer than this.
MAX_OLD_TEXT_BYTES = 1024 * 1024
# Parameters whose string argument names a path (a word of the name, split at `_` and `-`) ...
PATH_WORDS = frozenset({"path", "file", "filename", "dir", "directory", "folder", "target", "destination"})
# ... and those whose argument is a file's text.
CONTENT_NAMES = frozenset({"content", "contents", "text", "data", "body"})

DECLINED = "not run: the person declined this call, so nothing was written"
RUN_HINT = "Answer without it, or call another tool."


class Tool(Protocol):
    """What consent reads of a tool (the registry's `Tool`, which depends on this package)."""

    @property
    def name(self) -> str: ...

    @property
    def loaded(self) -> LoadedTool: ...

    @property
    def request_sha256(self) -> str: ...


class Choice(StrEnum):
    ALLOW_ONCE = "allow-once"
    ALLOW_ALWAYS = "allow-always"  # this tool, as it is now, in this session
    REJECT = "reject"


class CannotAsk(Exception):
    """Nobody can be asked about the call here (a client without the means, no terminal). The
    message ends the sentence "Writing needs the person's approval, and ...": why nobody can be
    asked, and how the person can approve instead."""


@dataclass(frozen=True)
class CallPath:
    """A path argument of a call, and where it leads."""

    argument: str  # the parameter's name
    value: str  # as the call gives it, a path in the tool's sandbox
    host: Path | None  # where that is on the host; None: inside no grant (the sandbox refuses it)
    granted: Path | None = None  # the granted directory it lies in


@dataclass(frozen=True)
class CallText:
    """A string argument of a call that is no path: text the call may write."""

    argument: str
    text: str

    def shown(self, limit: int = MAX_SHOWN_CHARS, keep: str = "") -> str:
        """The text, at most `limit` characters of it, made visible (but for `keep`)."""
        cut = len(self.text) > limit
        return visible(self.text[:limit], keep) + ("…" if cut else "")

    def preview(self) -> str:
        """The text in a sentence: quoted, short, with its length."""
        size = f"{len(self.text):,} character{'' if len(self.text) == 1 else 's'}"
        cut = "…" if len(self.text) > PREVIEW_CHARS else ""
        return f"{quoted(self.text[:PREVIEW_CHARS])}{cut} ({visible(self.argument)}, {size})"


@dataclass(frozen=True)
class WholeFile:
    """A call that writes one whole file's text: shown as a diff."""

    path: Path
    new_text: str
    old_text: str | None  # None: there is no such file yet


@dataclass(frozen=True)
class ConsentRequest:
    """What the person is asked about one call."""

    tool: str
    component: Path  # the tool's file
    writable: tuple[DirGrant, ...]  # the directories the call may write
    arguments: dict[str, Any]
    paths: tuple[CallPath, ...] = ()
    texts: tuple[CallText, ...] = ()
    whole_file: WholeFile | None = None
    # The agent run's step that makes the call (its tool call was announced to the client);
    # None: a call the client asked for itself.
    step: int | None = None

    def title(self) -> str:
        hosts = ", ".join(quoted(str(grant.host)) for grant in self.writable)
        return f"{visible(self.tool)} may write to {hosts}"

    def places(self) -> str:
        return ", ".join(f"{quoted(str(grant.host))} (at {quoted(grant.guest)})" for grant in self.writable)

    def targets(self) -> str:
        """The paths it names, where they lead."""
        return ", ".join(_target(path) for path in self.paths)

    def others(self) -> str:
        """Its arguments that are neither paths nor text (`append=true`), as JSON values."""
        named = {path.argument for path in self.paths} | {text.argument for text in self.texts}
        return ", ".join(
            f"{visible(key)}={visible(json.dumps(value, ensure_ascii=False))}"
            for key, value in self.arguments.items()
            if key not in named
        )

    def detail(self) -> str:
        """The tool, its file, where it may write and the paths it names (ACP shows the text it
        would write beside this, as content or a diff)."""
        sentences = [
            f"The tool {quoted(self.tool)} ({quoted(str(self.component))}) asks to run with read-write "
            f"access to {self.places()}."
        ]
        if self.paths:
            sentences.append(f"It names {self.targets()}.")
        if self.others():
            sentences.append(f"Other arguments: {self.others()}.")
        return " ".join(sentences)

    def message(self) -> str:
        """The whole question in a few sentences, for a face that shows one message."""
        sentences = [f"llama-agent: {self.detail()}"]
        if self.texts:
            sentences.append(f"Text: {'; '.join(text.preview() for text in self.texts)}.")
        sentences.append("Allow this call?")
        return " ".join(sentences)

    def summary(self) -> str:
        """What the call would write where, for a refusal."""
        where = self.targets() if self.paths else self.places()
        what = f" the text {'; '.join(text.preview() for text in self.texts)}" if self.texts else ""
        return f"{visible(self.tool)} would write{what} to {where}"


def _target(path: CallPath) -> str:
    if path.host is None:
        return (
            f"{quoted(path.value)} ({visible(path.argument)}: inside no granted directory, so it is refused)"
        )
    return f"{quoted(str(path.host))} ({visible(path.argument)})"


def writable_dirs(grants: Grants) -> tuple[DirGrant, ...]:
    return tuple(grant for grant in grants.dirs if grant.mode == "rw")


# What "always allow" binds, as the grants file binds an approval: the tool's name, its component
# (sha256), its policy's request (sha256); and the directories it may write, as the person saw them.
AllowKey = tuple[ApprovalKey, tuple[str, ...]]


def allow_key(tool: Tool, grants: Grants) -> AllowKey:
    approval = ApprovalKey(tool.name, tool.loaded.content_hash, tool.request_sha256)
    return approval, tuple(f"{grant.host} at {grant.guest}" for grant in writable_dirs(grants))


class CallConsent:
    """A session's answers: which calls need asking, and "always allow" as it was answered."""

    def __init__(self, allow_writes: bool = False) -> None:
        self.allow_writes = allow_writes  # approved up front (--allow-writes)
        self._always: set[AllowKey] = set()
        self._lock = threading.Lock()

    def needed(self, tool: Tool, grants: Grants) -> bool:
        """Whether a call of `tool` with `grants` needs the person's approval."""
        if self.allow_writes or not writable_dirs(grants):
            return False
        with self._lock:
            return allow_key(tool, grants) not in self._always

    def answered(self, tool: Tool, grants: Grants, choice: Choice) -> bool:
        """Record the answer; whether the call may run. "Always" holds for this tool as it is now:
        another component, request or writable directory is asked about again."""
        if choice is Choice.ALLOW_ALWAYS:
            with self._lock:
                self._always.add(allow_key(tool, grants))
        return choice in (Choice.ALLOW_ONCE, Choice.ALLOW_ALWAYS)


def describe_call(
    tool: Tool, grants: Grants, arguments: dict[str, Any], step: int | None = None
) -> ConsentRequest:
    """The question about a call of `tool` with `grants` and (validated) `arguments`. Blocking:
    it may read the file the call would replace, to show the change as a diff."""
    paths: list[CallPath] = []
    texts: list[CallText] = []
    for name, value in arguments.items():
        if not isinstance(value, str):
            continue
        path = _path_argument(name, value, grants.dirs)
        if path is not None:
            paths.append(path)
        else:
            texts.append(CallText(name, value))
    request = ConsentRequest(
        tool.name, tool.loaded.path, writable_dirs(grants), arguments, tuple(paths), tuple(texts), step=step
    )
    return replace(request, whole_file=_whole_file(request))


def _path_argument(name: str, value: str, dirs: Sequence[DirGrant]) -> CallPath | None:
    """`value` as a path argument, if its parameter names a path or it is an absolute path inside
    a granted directory; None if it is neither."""
    named = bool(PATH_WORDS & set(name.lower().replace("-", "_").split("_")))
    if not named and not value.startswith("/"):
        return None
    found = _through_grants(value, dirs)
    if found is not None:
        return CallPath(name, value, *found)
    return CallPath(name, value, None) if named and value else None


def _through_grants(value: str, dirs: Sequence[DirGrant]) -> tuple[Path, Path] | None:
    """(host path, granted directory) that the sandbox path `value` leads to, as wasmtime resolves
    it: relative paths from /workspace (the workspace tools' convention), `..` never above a grant."""
    if not value.startswith("/"):
        if not any(grant.guest == WORKSPACE_GUEST for grant in dirs):
            return None
        value = posixpath.join(WORKSPACE_GUEST, value)
    guest = posixpath.normpath(value)
    for grant in sorted(dirs, key=lambda grant: len(grant.guest), reverse=True):
        root = posixpath.normpath(grant.guest)
        if guest == root:
            return grant.host, grant.host
        if guest.startswith(root.rstrip("/") + "/"):
            return grant.host / posixpath.relpath(guest, root), grant.host
    return None


def _whole_file(request: ConsentRequest) -> WholeFile | None:
    """The file and text of a call that writes one whole file: one path argument inside a grant,
    one text argument named like a file's content, within MAX_SHOWN_CHARS, and no other argument
    set to true (`append=true` adds to a file: not a whole file's text)."""
    if len(request.paths) != 1 or len(request.texts) != 1:
        return None
    [path], [text] = request.paths, request.texts
    others = [v for k, v in request.arguments.items() if k not in (path.argument, text.argument)]
    if (
        path.host is None
        or path.granted is None
        or text.argument.lower() not in CONTENT_NAMES
        or len(text.text) > MAX_SHOWN_CHARS
        or any(value is True for value in others)
    ):
        return None
    readable, old = _current_text(path.host, path.granted)
    return WholeFile(path.host, text.text, old) if readable else None


def _current_text(path: Path, granted: Path) -> tuple[bool, str | None]:
    """(True, the text of the file at `path`, None if there is none), or (False, None) when it
    cannot be shown: no file of text, too long, or a link out of the granted directory (the tool
    could not follow it either)."""
    try:
        real = Path(os.path.realpath(path))
        if not real.is_relative_to(os.path.realpath(granted)):
            return False, None
        data = read_regular_file(real, MAX_OLD_TEXT_BYTES)
    except FileNotFoundError:
        return True, None
    except (OSError, ValueError):
        return False, None
    try:
        return True, data.decode("utf-8")
    except UnicodeDecodeError:
        return False, None


def declined(in_run: bool) -> str:
    """The result of a call the person rejected (in an agent run, what the model reads)."""
    return f"{DECLINED}. {RUN_HINT}" if in_run else DECLINED


def not_asked(request: ConsentRequest, reason: str, in_run: bool) -> str:
    """The result of a call nobody could be asked about: what it would write where, and `reason`
    (why nobody could be asked and how to approve)."""
    text = f"not run: {request.summary()}. Writing needs the person's approval, and {reason}"
    return f"{text} {RUN_HINT}" if in_run else text
