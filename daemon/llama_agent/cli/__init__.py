"""The `llama-agent` command: the daemon, and the tool host without a client.

`main` parses, configures logging, runs the subcommand and turns what it raised into an exit code
(cli/exits.py); each subcommand lives with its kind (serve.py: the faces on stdio; run.py; tools.py)
and takes only the flag groups it reads (options.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from llama_agent import __version__
from llama_agent.cli import run, serve, tools
from llama_agent.cli.exits import exit_code_for, message_for
from llama_agent.cli.logs import configure_logging, configure_service_telemetry
from llama_agent.cli.options import Command
from llama_agent.cli.serve import serve_acp_on_stdio, serve_on_stdio
from llama_agent.cli.tools import parse_key_values
from llama_agent.common.memory import keep_malloc_lean
from llama_agent.config import DaemonConfig

DESCRIPTION = "The `llama-agent` command: the daemon, and the tool host without a client."

__all__ = [
    "main",
    "parse_arguments",
    "parse_command_line",
    "parse_key_values",
    "serve_acp_on_stdio",
    "serve_on_stdio",
]


def main(argv: Sequence[str] | None = None) -> int:
    keep_malloc_lean()  # before anything large is allocated and freed
    args = parse_arguments(argv)
    command: Command = args.subcommand
    try:
        settings = command.logging.settings(args)
        configure_logging(settings.verbosity, settings.file, settings.format)
        if command.logging.service:
            configure_service_telemetry(settings.audit_log)
        # After the logging: building the settings may warn (an environment variable ignored).
        config = command.config(args)
        return command.handler(config, args)
    except Exception as error:
        code = exit_code_for(error)
        if code is None:
            raise  # a bug: its traceback is what to report
        print(f"llama-agent: {message_for(error)}", file=sys.stderr)
        return code


def parse_command_line(argv: Sequence[str] | None) -> tuple[DaemonConfig, argparse.Namespace]:
    """The daemon's settings and the parsed command; exits with usage on bad arguments."""
    args = parse_arguments(argv)
    command: Command = args.subcommand
    return command.config(args), args


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed command line; exits with usage on bad arguments. A flag the subcommand does not
    take is refused with that subcommand's usage, which lists the flags it does take."""
    args, unknown = _parser().parse_known_args(argv)
    if unknown:
        command: Command = args.subcommand
        command.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llama-agent", description=DESCRIPTION, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve.add_commands(commands)
    run.add_commands(commands)
    tools.add_commands(commands)
    return parser
