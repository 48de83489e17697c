"""`tools list|invoke|grant|revoke|new|build`: the tool host without a client."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_agent.cli.exits import EXIT_FAILURE, CommandFailed, UsageError
from llama_agent.cli.options import (
    COMMAND_LOGGING,
    TOOL_DIRECTORIES,
    TOOLS,
    WORKSPACE,
    Handler,
    OptionGroup,
    add_command,
)
from llama_agent.common.text import quoted, visible
from llama_agent.config import BUNDLED_TOOLS_DIR, DaemonConfig

if TYPE_CHECKING:
    from llama_agent.services.consent.approvals import PendingRequest
    from llama_agent.services.tools.registry import ToolSet


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tools = commands.add_parser(
        "tools", help="list, invoke and build tools without a client", allow_abbrev=False
    )
    tool_commands = tools.add_subparsers(dest="tools_command", required=True)

    def command(
        name: str, handler: Handler, groups: Sequence[OptionGroup], help: str
    ) -> argparse.ArgumentParser:
        return add_command(tool_commands, name, handler, groups, logging=COMMAND_LOGGING, help=help)

    listing = command("list", _list, (*TOOLS, WORKSPACE), "print the loaded tools")
    listing.add_argument("--json", action="store_true", help="print the tools/list result as JSON")

    command(
        "seal",
        _seal,
        TOOLS,
        "load the tools into the compile cache (--cache-dir), then seal it for replicas that only "
        "read it (--cache-read-only): its entries signed with a new key pair whose private key is "
        "kept nowhere, its public key in signing.pub, its signing.key removed",
    )

    invoke = command("invoke", _invoke, (*TOOLS, WORKSPACE), "call one tool")
    invoke.add_argument("name", help="tool name")
    invoke.add_argument(
        "arguments", nargs="*", metavar="KEY=VALUE", help="arguments, typed by the tool's schema"
    )
    invoke.add_argument("--json", action="store_true", help="print the tools/invoke result as JSON")

    grant = command(
        "grant", _grant, (*TOOLS, WORKSPACE), "approve what a tool's policy asks for (in the grants file)"
    )
    grant.add_argument("name", help="tool name")
    grant.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    # The grants file only: no tool is loaded.
    revoke = command("revoke", _revoke, (TOOL_DIRECTORIES,), "remove a tool's approvals")
    revoke.add_argument("name", help="tool name")

    new = command("new", _new, (), "create a tool to start from")
    new.add_argument("name", help="the tool's name")
    new.add_argument("--lang", choices=["python", "js"], default="python", help="(default: %(default)s)")
    new.add_argument(
        "--dir", type=Path, default=Path("components"), metavar="DIR", help="where (default: %(default)s)"
    )

    build = command("build", _build, (), "build tool sources into .wasm")
    build.add_argument(
        "sources", nargs="*", type=Path, metavar="SRC", help="source directories (default: all bundled)"
    )
    build.add_argument(
        "--out",
        type=Path,
        default=BUNDLED_TOOLS_DIR,
        metavar="DIR",
        help="output directory (default: %(default)s)",
    )
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")


# Each command that loads tools opens a core without a watcher (the command is over soon) and
# closes it before returning, its tool workers with it.


def _list(config: DaemonConfig, args: argparse.Namespace) -> int:
    from llama_agent.core import open_core
    from llama_agent.faces.wire.results import failure_to_wire, tool_to_wire
    from llama_agent.services.sessions import NobodyToAsk

    with open_core(config, watch=False) as core:
        snapshot = core.toolbox.snapshot
        # As a session sees them: with the workspace granted (nothing is called: nobody is asked).
        session = core.open_session(workspace=config.session.workspace, asker=NobodyToAsk(""))
        seen = session.tools()
    tools = [tool_to_wire(tool) for _, tool in sorted(seen.items())]
    failed = [failure_to_wire(failure) for failure in snapshot.failures]
    if args.json:  # JSON escapes every control character (and all that is not ASCII)
        print(json.dumps({"tools": tools, "failed": failed}, indent=2))
        return 0
    for tool in tools:
        _print_tool(tool)
    for failure in failed:
        # The error may quote the file: both are the tool author's words.
        print(f"failed to load {quoted(failure['path'])}: {visible(failure['error'])}", file=sys.stderr)
    if not tools and not failed:
        print(f"no tools in {', '.join(map(str, config.tools.watched_dirs()))}", file=sys.stderr)
    return 0


def _seal(config: DaemonConfig, args: argparse.Namespace) -> int:
    """Fails, sealing nothing, if a tool does not load: what is shipped is the whole set."""
    from llama_agent.core import open_core

    if args.cache_dir is None:  # never the person's own cache by default: it loses its key
        raise UsageError("name the cache to seal with --cache-dir DIR (its signing.key is removed)")
    if config.locations.cache_read_only:
        raise UsageError("a cache is sealed where it is filled, not with --cache-read-only")
    with open_core(config, watch=False) as core:
        snapshot = core.toolbox.snapshot
        if snapshot.failures:
            failed = ", ".join(quoted(str(failure.path)) for failure in snapshot.failures)
            raise CommandFailed(f"not sealed: some tools failed to load ({failed}); see `tools list`")
        try:
            count = core.toolbox.host.seal(tool.loaded for tool in snapshot.tools.values())
        except OSError as error:
            raise CommandFailed(f"not sealed: {error}") from error
    print(
        f"sealed {count} compiled tool(s) in {quoted(str(args.cache_dir))}: replicas verify them with "
        "signing.pub (--cache-read-only); the private key was kept nowhere"
    )
    return 0


def _print_tool(tool: dict[str, Any]) -> None:
    """A tool of tools/list, for a person: its own words (name, version, descriptions, parameter
    names) with their control characters made visible; `grantsPending` is so already."""
    print(f"{visible(tool['name'])} {visible(tool['version'])}: {visible(tool['description'])}")
    schema = tool["inputSchema"]
    for name, prop in schema["properties"].items():
        required = "required" if name in schema["required"] else "optional"
        described = visible(str(prop.get("description", "")))
        print(f"    {visible(name)} ({visible(str(prop.get('type')))}, {required}): {described}")
    if tool["grantsPending"]:
        print(f"    grants pending, {tool['grantsPending']}")


def _invoke(config: DaemonConfig, args: argparse.Namespace) -> int:
    """An unknown tool, or arguments that do not fit its schema, are raised (a usage error); a
    call that ran and failed is exit code 1. A call that may write runs without a question: the
    person typed it."""
    import asyncio

    from llama_agent.core import open_core
    from llama_agent.faces.wire.results import call_result_to_wire
    from llama_agent.services.sessions import NobodyToAsk

    with open_core(config, watch=False) as core:
        tool = core.toolbox.snapshot.tools.get(args.name)
        arguments = parse_key_values(args.arguments, tool.input_schema if tool else {})
        typed = NobodyToAsk("the person typed the call")  # never asked: writes are allowed
        session = core.open_session(workspace=config.session.workspace, asker=typed, allow_writes=True)
        result = asyncio.run(session.invoke(args.name, arguments))
    if result.tool.pending is not None:
        from llama_agent.services.consent.approvals import grant_command

        print(
            f"llama-agent: {visible(args.name)} ran without the grants its policy asks for (not "
            f"approved: see `{grant_command(result.tool.pending)}`)",
            file=sys.stderr,
        )
    if args.json:  # JSON escapes every control character (and all that is not ASCII)
        print(json.dumps(call_result_to_wire(result), indent=2))
    else:
        stream = sys.stderr if result.invocation.is_error else sys.stdout
        for text in result.texts():
            # The tool's output, lines and tabs kept; nothing in it may drive the terminal.
            shown = visible(text, keep="\n\t")
            print(shown, end="" if shown.endswith("\n") else "\n", file=stream)
    return EXIT_FAILURE if result.invocation.is_error else 0


def _grant(config: DaemonConfig, args: argparse.Namespace) -> int:
    """Show what NAME's policy asks for, confirm, and record the approval in the grants file."""
    from llama_agent.core import open_core
    from llama_agent.runtime.tools.grants_file import GrantsFileError
    from llama_agent.services.consent.approvals import describe_request, tool_words

    with open_core(config, watch=False) as core:
        approvals = core.approvals
        request = _request_to_grant(core.toolbox.snapshot, args.name)
    # What the person approves: every outside string in it is quoted and made visible.
    name = tool_words(request.name)
    print(f"{name} ({quoted(str(request.path))}) asks for:")
    for item in describe_request(request):
        print(f"    {item}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("not granted: stdin is not a terminal; pass --yes to confirm")
        if input(f"Grant these to {name}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing granted")
            return EXIT_FAILURE
    try:
        file = approvals.save(request)
    except (GrantsFileError, OSError) as error:  # the reason, in the words of the question asked
        raise CommandFailed(f"not granted: {error}") from error
    print(f"granted to {name} (recorded in {quoted(str(file))})")
    return 0


def _request_to_grant(snapshot: ToolSet, name: str) -> PendingRequest:
    """The pending request of the tool `name` (or, for a file that did not load, of the file with
    that stem); a UsageError saying why there is none otherwise."""
    from llama_agent.runtime.tools.policy import policy_path

    tool = snapshot.tools.get(name)
    if tool is not None and tool.pending is not None:
        return tool.pending
    unloaded = [r for r in snapshot.pending if not r.loaded and r.name == name]
    if tool is None and unloaded:
        return unloaded[0]
    if tool is None:
        known = ", ".join(sorted(snapshot.tools)) or "none are loaded"
        raise UsageError(f"unknown tool {name!r} (available: {known})")
    if tool.policy_error:  # the policy's own words may be in it
        raise UsageError(
            f"{name}'s policy cannot be applied, so there is nothing to grant: {tool.policy_error}"
        )
    if tool.granted_by:
        raise UsageError(f"{name}'s requested grants are already approved ({tool.granted_by})")
    policy = policy_path(tool.loaded.path)
    if not policy.exists():
        raise UsageError(f"{name} asks for nothing: there is no {quoted(str(policy))}")
    raise UsageError(
        f"{name} asks for nothing beyond the defaults ({quoted(str(policy))}): there is nothing to grant"
    )


def _revoke(config: DaemonConfig, args: argparse.Namespace) -> int:
    from llama_agent.services.consent.approvals import approvals_for, tool_words

    approvals = approvals_for(config.locations.config_dir, config.tools.watched_dirs())
    removed = approvals.revoke(args.name)
    name, file = tool_words(args.name), quoted(str(approvals.grants_file))
    if not removed:
        raise UsageError(f"{name} has no approval in {file}")
    print(f"revoked {removed} approval(s) of {name} in {file}")
    return 0


def _new(config: DaemonConfig, args: argparse.Namespace) -> int:
    from llama_agent.cli.scaffold import new_tool

    directory = new_tool(args.name, args.lang, args.dir)
    print(f"created {directory}; build it with: llama-agent tools build {directory}")
    return 0


def _build(config: DaemonConfig, args: argparse.Namespace) -> int:
    from llama_agent.cli.build import COMPONENT_SOURCES, build_all, source_directories

    sources = args.sources or source_directories(COMPONENT_SOURCES)
    for output in build_all(sources, args.out, force=args.force):
        print(output)
    return 0


def parse_key_values(pairs: Sequence[str], schema: dict[str, Any]) -> dict[str, Any]:
    """`key=value` words to an arguments object, each value typed by the schema.

    Only the first `=` splits, so values may contain `=` and spaces (when quoted).
    """
    from llama_agent.runtime.tools.schema import ArgumentError

    properties: dict[str, Any] = schema.get("properties", {})
    arguments: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ArgumentError(f"expected KEY=VALUE, got {pair!r}")
        kind = properties.get(key, {}).get("type", "string")
        arguments[key] = _typed(key, text, kind)
    return arguments


def _typed(key: str, text: str, kind: str) -> Any:
    from llama_agent.runtime.tools.schema import ArgumentError

    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
    except ValueError as error:
        raise ArgumentError(f"argument {key!r}: expected {kind}, got {text!r}", key) from error
    if kind == "boolean":
        lowered = text.lower()
        if lowered not in ("true", "false"):
            raise ArgumentError(f"argument {key!r}: expected true or false, got {text!r}", key)
        return lowered == "true"
    return text
