"""The command line's flags, in groups: each group is a small parent parser for the subcommands
that read it, and builds its own section of the daemon's settings from what was parsed.

A subcommand takes only the groups whose settings its code reads, so argparse refuses any other
flag ("unrecognized arguments") as it refuses a misspelt one.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from llama_agent.config import BUNDLED_TOOLS_DIR, DaemonConfig, LoggingSettings
from llama_agent.runtime.models.backend import ModelSettings, RemoteSettings
from llama_agent.services.tools.settings import DEFAULT_TIMEOUT_SECONDS

if TYPE_CHECKING:
    from llama_agent.faces.network.settings import ServiceSettings

# What a subcommand runs: its settings and its own parsed flags in, an exit code out.
Handler = Callable[[DaemonConfig, argparse.Namespace], int]


class OptionError(ValueError):
    """Flags that parse one by one but not together (or not for this command): a usage error."""


class OptionGroup(Protocol):
    def parent(self) -> argparse.ArgumentParser:
        """The group's flags, as a parent parser (add_help=False)."""

    def apply(self, args: argparse.Namespace, config: DaemonConfig) -> DaemonConfig:
        """`config` with the group's section set from `args`; OptionError if the flags clash."""


@dataclass(frozen=True)
class Command:
    """A subcommand: its parser (for usage errors), what it runs and the flag groups it reads."""

    parser: argparse.ArgumentParser
    handler: Handler
    groups: tuple[OptionGroup, ...]
    logging: LoggingOptions

    def config(self, args: argparse.Namespace) -> DaemonConfig:
        """The settings the flags in `args` ask for; exits with this command's usage if they clash."""
        config = DaemonConfig()
        try:
            for group in (*self.groups, self.logging):
                config = group.apply(args, config)
        except OptionError as error:
            self.parser.error(str(error))
        return config


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    groups: Sequence[OptionGroup],
    *,
    logging: LoggingOptions,
    help: str,
) -> argparse.ArgumentParser:
    """The subcommand `name` taking the flags of `groups` and of `logging`; add its own to the parser
    returned."""
    # No abbreviations: `--tool` must not be read as `--tools-dir` by a command without `--tool`.
    parents = [group.parent() for group in (*groups, logging)]
    parser = commands.add_parser(name, parents=parents, help=help, allow_abbrev=False)
    parser.set_defaults(subcommand=Command(parser, handler, tuple(groups), logging))
    return parser


# -- argparse types: a bad value is a usage error that names the flag -----------------------------


def at_least(low: int) -> Callable[[str], int]:
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


def seconds(text: str) -> float:
    """An argparse type: a duration in seconds, more than 0 and finite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text!r}")
    return value


def directory(text: str) -> Path:
    """An argparse type: an existing directory."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory")
    return path


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


# -- the groups ------------------------------------------------------------------------------------


class ToolDirectoryOptions:
    """Where tools come from: every command that loads tools, or that reads the grants file (it must
    lie in none of them)."""

    def parent(self) -> argparse.ArgumentParser:
        parser = _parent()
        parser.add_argument(
            "--tools-dir",
            action="append",
            type=Path,
            metavar="DIR",
            help=f"directory of tool components; repeatable (default, unless --trusted-tools-dir is "
            f"given: {BUNDLED_TOOLS_DIR}). Their policies only ask: see `tools grant`",
        )
        parser.add_argument(
            "--trusted-tools-dir",
            action="append",
            type=Path,
            metavar="DIR",
            help="like --tools-dir, and the grants its tools' policies ask for apply without asking; "
            "repeatable",
        )
        return parser

    def apply(self, args: argparse.Namespace, config: DaemonConfig) -> DaemonConfig:
        trusted = tuple(args.trusted_tools_dir or ())
        # The bundled tools unless some tools directory is named.
        directories = tuple(args.tools_dir or (() if trusted else (BUNDLED_TOOLS_DIR,)))
        tools = replace(config.tools, directories=directories, trusted_directories=trusted)
        return replace(config, tools=tools)


class ToolHostOptions:
    """How the tools run: every command that loads them (compiling into the cache, describing them
    within the call limits, which also decide what a policy asks beyond the defaults)."""

    def parent(self) -> argparse.ArgumentParser:
        parser = _parent()
        parser.add_argument(
            "--cache-dir",
            type=Path,
            metavar="DIR",
            help="compiled components and models (default: $LLAMA_AGENT_CACHE_DIR, else "
            "$XDG_CACHE_HOME/llama-agent, else ~/.cache/llama-agent)",
        )
        parser.add_argument(
            "--cache-read-only",
            action="store_true",
            help="only read the compile cache, filled and sealed beforehand (`tools seal`; a shared "
            "cache mounted read-only for replicas; see docs/service.md): its entries are verified "
            "with its public key and nothing is written to it; a tool it lacks is compiled for this "
            "process alone",
        )
        parser.add_argument(
            "--tool-timeout",
            type=seconds,
            default=DEFAULT_TIMEOUT_SECONDS,
            metavar="SECONDS",
            help="wall-clock limit of one tool call (default: %(default)s)",
        )
        return parser

    def apply(self, args: argparse.Namespace, config: DaemonConfig) -> DaemonConfig:
        tools = replace(config.tools, timeout_seconds=args.tool_timeout)
        locations = replace(config.locations, cache_read_only=args.cache_read_only)
        if args.cache_dir is not None:
            locations = replace(locations, cache_dir=args.cache_dir)
        return replace(config, tools=tools, locations=locations)


class ModelOptions:
    """Which model answers, and how it runs: the commands that run the agent."""

    def parent(self) -> argparse.ArgumentParser:
        parser = _parent()
        parser.add_argument(
            "--backend",
            choices=["llama", "openai"],
            default="llama",
            help="llama: the model runs in the daemon (default); openai: an OpenAI-compatible server "
            "runs it (llama-server, vLLM, Ollama, LM Studio; see docs/backends.md)",
        )
        parser.add_argument(
            "--model",
            metavar="MODEL",
            help="llama backend: a GGUF file, or a Hugging Face reference REPO:FILE.gguf downloaded "
            "once into the cache (default: the embedded Gemma 3 270M); openai backend: the served "
            "model's name (default: the server's only or first model)",
        )
        parser.add_argument(
            "--base-url",
            metavar="URL",
            help="openai backend: the server's base URL, e.g. http://127.0.0.1:8080/v1",
        )
        parser.add_argument(
            "--api-key-env",
            metavar="VAR",
            help="openai backend: the environment variable that holds the server's API key",
        )
        parser.add_argument(
            "--max-concurrent-runs",
            type=at_least(1),
            metavar="N",
            help="agent runs in flight at once: the openai backend's at the server (default: "
            f"{RemoteSettings.max_concurrent_runs}); the llama backend's decoded together, each "
            f"a sequence of one batch with a context of its own (default: {ModelSettings.parallel_runs})",
        )
        parser.add_argument(
            "--request-timeout",
            type=seconds,
            default=RemoteSettings.timeout_seconds,
            metavar="SECONDS",
            help="openai backend: how long to wait for the server to connect or send more "
            "(default: %(default)s)",
        )
        parser.add_argument(
            "--context-size",
            type=at_least(16),
            default=ModelSettings.context_size,
            metavar="N",
            help="model context, tokens (default: %(default)s)",
        )
        parser.add_argument(
            "--threads",
            type=at_least(1),
            metavar="N",
            help="model threads (default: the usable cores, at most 4)",
        )
        parser.add_argument(
            "--seed", type=at_least(0), default=ModelSettings.seed, metavar="N", help="sampling seed"
        )
        return parser

    def apply(self, args: argparse.Namespace, config: DaemonConfig) -> DaemonConfig:
        model = replace(
            _model_choice(args),
            context_size=args.context_size,
            threads=args.threads,
            seed=args.seed,
            parallel_runs=args.max_concurrent_runs or ModelSettings.parallel_runs,
        )
        return replace(config, model=model)


def _model_choice(args: argparse.Namespace) -> ModelSettings:
    """The model file, Hugging Face reference or server the flags name; OptionError if they clash."""
    if args.backend == "openai":
        url = args.base_url or ""
        if not url.startswith(("http://", "https://")):
            raise OptionError("--backend openai needs --base-url http(s)://HOST:PORT/v1")
        remote = RemoteSettings(
            base_url=url.rstrip("/"),
            model=args.model,
            api_key_env=args.api_key_env,
            max_concurrent_runs=args.max_concurrent_runs or RemoteSettings.max_concurrent_runs,
            timeout_seconds=args.request_timeout,
        )
        return ModelSettings(remote=remote)
    if args.base_url or args.api_key_env:
        raise OptionError("--base-url and --api-key-env are for --backend openai")
    if args.model is None:
        return ModelSettings()
    path = Path(args.model)
    if path.exists():
        return ModelSettings(path=path)
    # Imported only now: huggingface_hub takes a quarter of a second to import.
    from llama_agent.runtime.models.hub import parse_hub_reference

    if parse_hub_reference(args.model) is not None:
        return ModelSettings(hub_reference=args.model)
    return ModelSettings(path=path)


class ModelLoadingOptions:
    """When the model loads: the LSP face alone loads it before it is asked to."""

    def parent(self) -> argparse.ArgumentParser:
        parser = _parent()
        parser.add_argument(
            "--lazy-model",
            action="store_true",
            help="load the model on the first agent/run instead of right after initialize",
        )
        return parser

    def apply(self, args: argparse.Namespace, config: DaemonConfig) -> DaemonConfig:
        return replace(config, session=replace(config.session, eager_model_load=not args.lazy_model))


@dataclass(frozen=True)
class WorkspaceOptions:
    """The folder granted to tools whose policy asks for the workspace: the client's, for a face
    whose clients name one (`from_client`), else the current directory, unless --workspace."""

    from_client: bool = False

    def parent(self) -> argparse.ArgumentParser:
        parser = _parent()
        default = "the client's" if self.from_client else "the current directory"
        parser.add_argument(
            "--workspace",
            type=directory,
            metavar="DIR",
            help=f"folder granted to tools whose policy asks for the workspace (default: {default})",
        )
        return parser

    def apply(self, args: argparse.Namespace, config: DaemonConfig) -> DaemonConfig:
        workspace: Path | None = args.workspace
        if workspace is None and not self.from_client:
            workspace = Path.cwd()
        return replace(config, session=replace(config.session, workspace=workspace))


class WriteOptions:
    """Whether calls that may write run without asking the person: the faces, and `run`."""

    def parent(self) -> argparse.ArgumentParser:
        parser = _parent()
        parser.add_argument(
            "--allow-writes",
            action="store_true",
            help="run tool calls that may write (a tool granted a directory read-write, the workspace "
            "included) without asking: approved up front. Without it each such call is asked about, "
            "and refused where nobody can be asked",
        )
        return parser

    def apply(self, args: argparse.Namespace, config: DaemonConfig) -> DaemonConfig:
        return replace(config, session=replace(config.session, allow_writes=args.allow_writes))


class ServiceOptions:
    """`serve --listen`: the daemon as a network service of many tenants (faces/network)."""

    def parent(self) -> argparse.ArgumentParser:
        parser = _parent()
        group = parser.add_argument_group("network service (docs/service.md)")
        group.add_argument(
            "--listen", metavar="HOST:PORT", help="serve /lsp, /mcp and health on this address (not stdio)"
        )
        group.add_argument(
            "--tenants", type=Path, metavar="FILE", help="the tenants file (TOML); with --listen"
        )
        group.add_argument("--tls-cert", type=Path, metavar="FILE", help="TLS certificate chain (PEM)")
        group.add_argument("--tls-key", type=Path, metavar="FILE", help="TLS private key (PEM)")
        group.add_argument("--jwt-issuer", metavar="URL", help="accept JWT access tokens from this issuer")
        group.add_argument("--jwt-audience", metavar="AUD", help="the audience JWTs must be for")
        group.add_argument("--jwks-url", metavar="URL", help="where the issuer's signing keys are (JWKS)")
        group.add_argument(
            "--jwt-tenant-claim", default="tenant", metavar="CLAIM", help="the claim naming the tenant"
        )
        return parser

    def apply(self, args: argparse.Namespace, config: DaemonConfig) -> DaemonConfig:
        self.settings(args)  # checks the flags together
        return config

    def settings(self, args: argparse.Namespace) -> ServiceSettings | None:
        """The service the flags ask for; None without --listen. OptionError if they clash."""
        # Imported only for the service: its settings module reads PyJWT's.
        from llama_agent.faces.network.settings import ServiceSettings, parse_listen
        from llama_agent.services.tenants.auth import JwtSettings

        if args.listen is None:
            if args.tenants or args.tls_cert or args.tls_key or args.jwt_issuer or args.jwks_url:
                raise OptionError("--tenants, --tls-* and --jwt-* are for --listen")
            return None
        if args.tenants is None:
            raise OptionError("--listen needs --tenants FILE")
        if getattr(args, "stdio", False) or getattr(args, "workspace", None) is not None:
            raise OptionError("--listen serves the network: not --stdio, and each tenant has its workspace")
        if (args.tls_cert is None) != (args.tls_key is None):
            raise OptionError("--tls-cert and --tls-key go together")
        for path in (args.tls_cert, args.tls_key):
            if path is not None and not path.is_file():
                raise OptionError(f"{str(path)!r} is not a file")
        try:
            host, port = parse_listen(args.listen)
        except ValueError as error:
            raise OptionError(f"--listen: {error}") from None
        jwt_flags = (args.jwt_issuer, args.jwt_audience, args.jwks_url)
        if any(jwt_flags) and not all(jwt_flags):
            raise OptionError("--jwt-issuer, --jwt-audience and --jwks-url go together")
        jwt = JwtSettings(*jwt_flags, tenant_claim=args.jwt_tenant_claim) if all(jwt_flags) else None
        return ServiceSettings(host, port, args.tenants, args.tls_cert, args.tls_key, jwt)


@dataclass(frozen=True)
class LoggingOptions:
    """Where the log goes and how much of it: every command. A one-shot command is `quieter` (its
    stderr is the person's terminal): without -v it logs only warnings. A long-running one (a
    `service`) also takes the log's format, an audit log, and traces (OTEL_EXPORTER_OTLP_*)."""

    quieter: int = 0
    service: bool = False

    def parent(self) -> argparse.ArgumentParser:
        parser = _parent()
        parser.add_argument("--log-file", type=Path, metavar="FILE", help="log here instead of stderr")
        parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: protocol)")
        if self.service:
            parser.add_argument(
                "--log-format", choices=("text", "json"), default="text", help="json: one object per line"
            )
            parser.add_argument(
                "--audit-log", type=Path, metavar="FILE", help="append approvals and writable calls here"
            )
        return parser

    def settings(self, args: argparse.Namespace) -> LoggingSettings:
        settings = LoggingSettings(file=args.log_file, verbosity=args.verbose - self.quieter)
        if self.service:
            settings = replace(settings, format=args.log_format, audit_log=args.audit_log)
        return settings

    def apply(self, args: argparse.Namespace, config: DaemonConfig) -> DaemonConfig:
        return replace(config, logging=self.settings(args))


TOOL_DIRECTORIES = ToolDirectoryOptions()
TOOL_HOST = ToolHostOptions()
MODEL = ModelOptions()
MODEL_LOADING = ModelLoadingOptions()
WORKSPACE = WorkspaceOptions()
CLIENT_WORKSPACE = WorkspaceOptions(from_client=True)
WRITES = WriteOptions()
SERVICE = ServiceOptions()
SERVER_LOGGING = LoggingOptions(service=True)
COMMAND_LOGGING = LoggingOptions(quieter=1)
# Every group a command that opens a core reads for its tools.
TOOLS = (TOOL_DIRECTORIES, TOOL_HOST)
