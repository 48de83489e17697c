"""`run`: the agent once, in-process, without a client."""

from __future__ import annotations

import argparse
import sys

from llama_agent.cli.options import COMMAND_LOGGING, MODEL, TOOLS, WORKSPACE, WRITES, add_command
from llama_agent.config import DaemonConfig
from llama_agent.services.agent.loop import AgentRequest


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = add_command(
        commands,
        "run",
        _run,
        (*TOOLS, MODEL, WORKSPACE, WRITES),
        logging=COMMAND_LOGGING,
        help="run the agent once, showing its progress",
    )
    add_command(
        commands,
        "prepare",
        _prepare,
        (*TOOLS, MODEL),
        logging=COMMAND_LOGGING,
        help="evaluate the prompt starts of runs with these tools into the cache, for a fast first run",
    )
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


def _run(config: DaemonConfig, args: argparse.Namespace) -> int:
    """Progress to stderr, calls and the answer to stdout. A request the agent refuses, or a model
    that cannot serve it, is raised: an exit code like any command's. A call that may write is
    asked about on the terminal (cli/consent.py), unless --allow-writes."""
    import asyncio

    from llama_agent.cli.consent import TerminalAsker
    from llama_agent.cli.console import ConsoleEvents
    from llama_agent.core import open_core

    request = AgentRequest(
        prompt=args.prompt,
        tools=tuple(args.tools) if args.tools else None,
        max_steps=args.max_steps,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        tool_choice=args.tool_choice,
    )
    events = ConsoleEvents(sys.stdout, sys.stderr)
    # No watcher: the command is over soon.
    with open_core(config, watch=False) as core:
        core.models.show_download_bar = True
        session = core.open_session(workspace=config.session.workspace, asker=TerminalAsker())
        result = asyncio.run(session.run(request, events))
    events.finish(result)
    return 0


def _prepare(config: DaemonConfig, args: argparse.Namespace) -> int:
    """What `run` would evaluate before its first token for any request, evaluated and kept in the
    cache now (`make run` does this once, at set-up)."""
    import asyncio

    from llama_agent.core import open_core
    from llama_agent.services.agent.prepare import prepare_prompts

    with open_core(config, watch=False) as core:
        prepared = asyncio.run(prepare_prompts(core.agent))
    router = "the router's prefixes and " if prepared.router else ""
    starts = "1 prompt start" if prepared.starts == 1 else f"{prepared.starts} prompt starts"
    print(f"kept evaluated: {router}{starts}", file=sys.stderr)
    return 0
