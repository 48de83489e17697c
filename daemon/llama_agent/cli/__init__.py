"""The `llama-agent` command: the daemon, and the tool host without a client."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from llama_agent import __version__
from llama_agent.cli.logs import configure_logging
from llama_agent.common.text import quoted, visible
from llama_agent.config import BUNDLED_TOOLS_DIR, DaemonConfig, default_cache_dir
from llama_agent.runtime.models.backend import ModelLoader, RemoteSettings
from llama_agent.services.agent.loop import AgentRequest

if TYPE_CHECKING:
    from llama_agent.core import Core
    from llama_agent.services.consent.approvals import PendingRequest
    from llama_agent.services.tools.registry import ToolSet

log = logging.getLogger("llama-agent")

EXIT_TOOL_ERROR = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    config, args = parse_command_line(argv)
    long_running = args.command in ("serve", "mcp", "acp")
    configure_logging(args.verbose if long_running else args.verbose - 1, args.log_file)
    handler = args.handler
    result: int = handler(config, args)
    return result


def parse_command_line(argv: Sequence[str] | None) -> tuple[DaemonConfig, argparse.Namespace]:
    """The daemon's settings and the parsed command; exits with usage on bad arguments."""
    parser = _parser()
    args = parser.parse_args(argv)
    trusted = tuple(args.trusted_tools_dir or ())
    try:
        model_path, hub_model, remote = _model_choice(args)
    except ValueError as error:
        parser.error(str(error))
    config = DaemonConfig(
        # The bundled tools unless some tools directory is named.
        tools_dirs=tuple(args.tools_dir or ([] if trusted else [BUNDLED_TOOLS_DIR])),
        trusted_tools_dirs=trusted,
        cache_dir=args.cache_dir,
        model_path=model_path,
        hub_model=hub_model,
        remote=remote,
        log_file=args.log_file,
        verbosity=args.verbose,
        tool_timeout_seconds=args.tool_timeout,
        context_size=args.context_size,
        threads=args.threads,
        seed=args.seed,
        eager_model_load=not args.lazy_model,
        workspace=args.workspace or (None if args.command == "serve" else Path.cwd()),
    )
    return config, args


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--tools-dir",
        action="append",
        type=Path,
        metavar="DIR",
        help=f"directory of tool components; repeatable (default, unless --trusted-tools-dir is "
        f"given: {BUNDLED_TOOLS_DIR}). Their policies only ask: see `tools grant`",
    )
    common.add_argument(
        "--trusted-tools-dir",
        action="append",
        type=Path,
        metavar="DIR",
        help="like --tools-dir, and the grants its tools' policies ask for apply without asking; repeatable",
    )
    common.add_argument(
        "--backend",
        choices=["llama", "openai"],
        default="llama",
        help="llama: the model runs in the daemon (default); openai: an OpenAI-compatible server "
        "runs it (llama-server, vLLM, Ollama, LM Studio; see docs/backends.md)",
    )
    common.add_argument(
        "--model",
        metavar="MODEL",
        help="llama backend: a GGUF file, or a Hugging Face reference REPO:FILE.gguf downloaded once "
        "into the cache (default: the embedded Gemma 3 270M); openai backend: the served model's "
        "name (default: the server's only or first model)",
    )
    common.add_argument(
        "--base-url",
        metavar="URL",
        help="openai backend: the server's base URL, e.g. http://127.0.0.1:8080/v1",
    )
    common.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="openai backend: the environment variable that holds the server's API key",
    )
    common.add_argument(
        "--max-concurrent-runs",
        type=_at_least(1),
        default=RemoteSettings.max_concurrent_runs,
        metavar="N",
        help="openai backend: agent runs in flight at once (default: %(default)s)",
    )
    common.add_argument(
        "--request-timeout",
        type=float,
        default=RemoteSettings.timeout_seconds,
        metavar="SECONDS",
        help="openai backend: how long to wait for the server to connect or send more (default: %(default)s)",
    )
    common.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        metavar="DIR",
        help="compiled components and models (default: %(default)s)",
    )
    common.add_argument(
        "--tool-timeout",
        type=float,
        default=DaemonConfig.tool_timeout_seconds,
        metavar="SECONDS",
        help="wall-clock limit of one tool call (default: %(default)s)",
    )
    common.add_argument(
        "--context-size",
        type=_at_least(16),
        default=DaemonConfig.context_size,
        metavar="N",
        help="model context, tokens (default: %(default)s)",
    )
    common.add_argument(
        "--threads",
        type=_at_least(1),
        metavar="N",
        help="model threads (default: the usable cores, at most 4)",
    )
    common.add_argument(
        "--seed", type=_at_least(0), default=DaemonConfig.seed, metavar="N", help="sampling seed"
    )
    common.add_argument(
        "--lazy-model",
        action="store_true",
        help="load the model on the first agent/run instead of right after initialize",
    )
    common.add_argument(
        "--workspace",
        type=Path,
        metavar="DIR",
        help="folder granted to tools whose policy asks for the workspace "
        "(default: the client's, for serve; the current directory otherwise)",
    )
    common.add_argument("--log-file", type=Path, metavar="FILE", help="log here instead of stderr")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: protocol)")

    parser = argparse.ArgumentParser(prog="llama-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", parents=[common], help="run the JSON-RPC daemon over stdio")
    # LSP clients (vscode-languageclient's stdio transport among them) may pass --stdio.
    serve.add_argument(
        "--stdio", action="store_true", help="accepted for LSP clients; stdio is the only transport"
    )
    serve.set_defaults(handler=_serve)

    mcp = commands.add_parser("mcp", parents=[common], help="serve the tools as an MCP server over stdio")
    mcp.set_defaults(handler=_mcp)

    acp = commands.add_parser("acp", parents=[common], help="be an ACP agent over stdio (Zed, JetBrains…)")
    acp.set_defaults(handler=_acp)

    run = commands.add_parser("run", parents=[common], help="run the agent once, showing its progress")
    run.add_argument("prompt", help="what to ask the agent")
    run.add_argument("--tool", action="append", dest="tools", metavar="NAME", help="offer only these tools")
    run.add_argument("--max-steps", type=int, default=AgentRequest.max_steps, metavar="N", help="tool calls")
    run.add_argument(
        "--max-tokens", type=int, default=AgentRequest.max_tokens, metavar="N", help="tokens per model turn"
    )
    run.add_argument("--temperature", type=float, default=AgentRequest.temperature, metavar="T")
    run.add_argument(
        "--tool-choice",
        default=AgentRequest.tool_choice,
        metavar="CHOICE",
        help="auto, required (the first turn calls a tool), none, or a tool name (default: %(default)s)",
    )
    run.set_defaults(handler=_run)

    tools = commands.add_parser("tools", help="list, invoke and build tools without a client")
    tool_commands = tools.add_subparsers(dest="tools_command", required=True)

    listing = tool_commands.add_parser("list", parents=[common], help="print the loaded tools")
    listing.add_argument("--json", action="store_true", help="print the tools/list result as JSON")
    listing.set_defaults(handler=_tools_list)

    invoke = tool_commands.add_parser("invoke", parents=[common], help="call one tool")
    invoke.add_argument("name", help="tool name")
    invoke.add_argument(
        "arguments", nargs="*", metavar="KEY=VALUE", help="arguments, typed by the tool's schema"
    )
    invoke.add_argument("--json", action="store_true", help="print the tools/invoke result as JSON")
    invoke.set_defaults(handler=_tools_invoke)

    grant = tool_commands.add_parser(
        "grant", parents=[common], help="approve what a tool's policy asks for (in the grants file)"
    )
    grant.add_argument("name", help="tool name")
    grant.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    grant.set_defaults(handler=_tools_grant)

    revoke = tool_commands.add_parser("revoke", parents=[common], help="remove a tool's approvals")
    revoke.add_argument("name", help="tool name")
    revoke.set_defaults(handler=_tools_revoke)

    new = tool_commands.add_parser("new", parents=[common], help="create a tool to start from")
    new.add_argument("name", help="the tool's name")
    new.add_argument("--lang", choices=["python", "js"], default="python", help="(default: %(default)s)")
    new.add_argument(
        "--dir", type=Path, default=Path("components"), metavar="DIR", help="where (default: %(default)s)"
    )
    new.set_defaults(handler=_tools_new)

    build = tool_commands.add_parser("build", parents=[common], help="build tool sources into .wasm")
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
    build.set_defaults(handler=_tools_build)
    return parser


def _model_choice(args: argparse.Namespace) -> tuple[Path | None, str | None, RemoteSettings | None]:
    """The model file, Hugging Face reference or server the options name; ValueError if they clash."""
    if args.backend == "openai":
        url = args.base_url or ""
        if not url.startswith(("http://", "https://")):
            raise ValueError("--backend openai needs --base-url http(s)://HOST:PORT/v1")
        if args.request_timeout <= 0:
            raise ValueError("--request-timeout must be more than 0")
        remote = RemoteSettings(
            base_url=url.rstrip("/"),
            model=args.model,
            api_key_env=args.api_key_env,
            max_concurrent_runs=args.max_concurrent_runs,
            timeout_seconds=args.request_timeout,
        )
        return None, None, remote
    if args.base_url or args.api_key_env:
        raise ValueError("--base-url and --api-key-env are for --backend openai")
    if args.model is None:
        return None, None, None
    path = Path(args.model)
    if path.exists():
        return path, None, None
    # Imported only now: huggingface_hub takes a quarter of a second to import.
    from llama_agent.runtime.models.hub import parse_hub_reference

    if parse_hub_reference(args.model) is not None:
        return None, args.model, None
    return path, None, None


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `low`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def _serve(config: DaemonConfig, args: argparse.Namespace) -> int:
    return serve_on_stdio(config)


def _mcp(config: DaemonConfig, args: argparse.Namespace) -> int:
    """The MCP face: the same tools, hot-reloaded, for MCP clients."""
    protocol_out = _claim_stdout(config, "MCP ")
    from llama_agent.faces.mcp import serve_mcp

    return serve_mcp(config, protocol_out)


def _acp(config: DaemonConfig, args: argparse.Namespace) -> int:
    return serve_acp_on_stdio(config)


def serve_acp_on_stdio(config: DaemonConfig, model_loader: ModelLoader | None = None) -> int:
    """The ACP face: the agent loop for ACP clients (`model_loader`: tests script the model)."""
    protocol_out = _claim_stdout(config, "ACP ")
    from llama_agent.faces.acp import serve_acp

    return serve_acp(config, protocol_out, model_loader)


def _claim_stdout(config: DaemonConfig, protocol: str = "") -> BinaryIO:
    """Stdout for the protocol alone ("serving MCP on stdio", or LSP's plain "serving on
    stdio"); call it before anything native is loaded."""
    from llama_agent.faces.stdio import claim_stdout_for_protocol

    protocol_out = claim_stdout_for_protocol()
    dirs = ", ".join(map(str, config.watched_dirs()))
    log.info("llama-agent %s serving %son stdio; tools from %s", __version__, protocol, dirs)
    return protocol_out


def serve_on_stdio(config: DaemonConfig, model_loader: ModelLoader | None = None) -> int:
    """Serve until `exit` or end of input, then end the process (never returns normally)."""
    protocol_out = _claim_stdout(config)
    import os

    from llama_agent.faces.lsp.server import server

    server.configure(config, model_loader)
    code = server.serve(sys.stdin.buffer, protocol_out)
    # Worker threads may be deep in a tool call or a generation: do not wait for them.
    logging.shutdown()
    os._exit(code)


def _run(config: DaemonConfig, args: argparse.Namespace) -> int:
    """The agent in-process, without a client: progress to stderr, calls and the answer to stdout."""
    import asyncio

    from llama_agent.cli.console import ConsoleEvents
    from llama_agent.runtime.models.backend import ContextOverflow, ModelError
    from llama_agent.services.agent.loop import InvalidRequest
    from llama_agent.services.tools.registry import UnknownTool

    request = AgentRequest(
        prompt=args.prompt,
        tools=tuple(args.tools) if args.tools else None,
        max_steps=args.max_steps,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        tool_choice=args.tool_choice,
    )
    core = _core(config)
    core.models.show_download_bar = True
    events = ConsoleEvents(sys.stdout, sys.stderr)
    try:
        result = asyncio.run(core.agent.run(request, events))
    except (ModelError, ContextOverflow, UnknownTool, InvalidRequest) as error:
        print(f"llama-agent: {visible(str(error))}", file=sys.stderr)  # a server's words, maybe
        return EXIT_USAGE
    finally:
        core.close()
    events.finish(result)
    return 0


def _core(config: DaemonConfig) -> Core:
    """The services, with the tools loaded once (no watcher: the command is over soon)."""
    from llama_agent.core import open_core

    return open_core(config, watch=False)


def _tools_list(config: DaemonConfig, args: argparse.Namespace) -> int:
    from llama_agent.faces.wire.results import failure_to_wire, tool_to_wire

    snapshot = _core(config).toolbox.snapshot
    tools = [tool_to_wire(tool) for _, tool in sorted(snapshot.tools.items())]
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
        print(f"no tools in {', '.join(map(str, config.watched_dirs()))}", file=sys.stderr)
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


def _tools_invoke(config: DaemonConfig, args: argparse.Namespace) -> int:
    from llama_agent.faces.wire.results import call_result_to_wire
    from llama_agent.runtime.tools.schema import ArgumentError
    from llama_agent.services.tools.registry import UnknownTool

    toolbox = _core(config).toolbox
    try:
        tool = toolbox.snapshot.tools.get(args.name)
        arguments = parse_key_values(args.arguments, tool.input_schema if tool else {})
        result = toolbox.invoke_blocking(args.name, arguments)
    except (UnknownTool, ArgumentError) as error:  # may quote the tool's parameter names
        print(f"llama-agent: {visible(str(error))}", file=sys.stderr)
        return EXIT_USAGE
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
    return EXIT_TOOL_ERROR if result.invocation.is_error else 0


def _tools_grant(config: DaemonConfig, args: argparse.Namespace) -> int:
    """Show what NAME's policy asks for, confirm, and record the approval in the grants file."""
    from llama_agent.runtime.tools.grants_file import GrantsFileError
    from llama_agent.services.consent.approvals import describe_request, tool_words

    core = _core(config)
    approvals = core.approvals
    request = _request_to_grant(core.toolbox.snapshot, args.name)
    if isinstance(request, str):
        print(f"llama-agent: {request}", file=sys.stderr)
        return EXIT_USAGE
    # What the person approves: every outside string in it is quoted and made visible.
    name = tool_words(request.name)
    print(f"{name} ({quoted(str(request.path))}) asks for:")
    for item in describe_request(request):
        print(f"    {item}")
    if not args.yes:
        if not sys.stdin.isatty():
            print("llama-agent: not granted: stdin is not a terminal; pass --yes to confirm", file=sys.stderr)
            return EXIT_USAGE
        if input(f"Grant these to {name}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing granted")
            return EXIT_TOOL_ERROR
    try:
        file = approvals.save(request)
    except (GrantsFileError, OSError) as error:  # may quote the grants file
        print(f"llama-agent: not granted: {visible(str(error))}", file=sys.stderr)
        return EXIT_TOOL_ERROR
    print(f"granted to {name} (recorded in {quoted(str(file))})")
    return 0


def _request_to_grant(snapshot: ToolSet, name: str) -> PendingRequest | str:
    """The pending request of the tool `name` (or, for a file that did not load, of the file with
    that stem); a sentence saying why there is none otherwise, made visible."""
    from llama_agent.runtime.tools.policy import policy_path

    tool = snapshot.tools.get(name)
    if tool is not None and tool.pending is not None:
        return tool.pending
    unloaded = [r for r in snapshot.pending if not r.loaded and r.name == name]
    if tool is None and unloaded:
        return unloaded[0]
    if tool is None:
        known = ", ".join(sorted(snapshot.tools)) or "none are loaded"
        return f"unknown tool {name!r} (available: {visible(known)})"
    if tool.policy_error:  # the policy's own words may be in it
        return (
            f"{name}'s policy cannot be applied, so there is nothing to grant: {visible(tool.policy_error)}"
        )
    if tool.granted_by:
        return f"{name}'s requested grants are already approved ({tool.granted_by})"
    policy = policy_path(tool.loaded.path)
    if not policy.exists():
        return f"{name} asks for nothing: there is no {quoted(str(policy))}"
    return f"{name} asks for nothing beyond the defaults ({quoted(str(policy))}): there is nothing to grant"


def _tools_revoke(config: DaemonConfig, args: argparse.Namespace) -> int:
    from llama_agent.runtime.tools.grants_file import GrantsFileError
    from llama_agent.services.consent.approvals import approvals_for, tool_words

    approvals = approvals_for(config)
    try:
        removed = approvals.revoke(args.name)
    except (GrantsFileError, OSError) as error:  # may quote the grants file
        print(f"llama-agent: {visible(str(error))}", file=sys.stderr)
        return EXIT_TOOL_ERROR
    name, file = tool_words(args.name), quoted(str(approvals.grants_file))
    if not removed:
        print(f"llama-agent: {name} has no approval in {file}", file=sys.stderr)
        return EXIT_USAGE
    print(f"revoked {removed} approval(s) of {name} in {file}")
    return 0


def _tools_new(config: DaemonConfig, args: argparse.Namespace) -> int:
    from llama_agent.cli.scaffold import ScaffoldError, new_tool

    try:
        directory = new_tool(args.name, args.lang, args.dir)
    except ScaffoldError as error:
        print(f"llama-agent: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"created {directory}; build it with: llama-agent tools build {directory}")
    return 0


def _tools_build(config: DaemonConfig, args: argparse.Namespace) -> int:
    from llama_agent.cli.build import COMPONENT_SOURCES, BuildError, build_all, source_directories

    sources = args.sources or source_directories(COMPONENT_SOURCES)
    try:
        for output in build_all(sources, args.out, force=args.force):
            print(output)
    except BuildError as error:
        print(f"llama-agent: {error}", file=sys.stderr)
        return 1
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
