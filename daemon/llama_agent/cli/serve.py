"""`serve`, `acp` and `mcp`: a face of the daemon on stdio, until its client goes."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import BinaryIO

from llama_agent import __version__
from llama_agent.cli.exits import UsageError
from llama_agent.cli.options import (
    CLIENT_WORKSPACE,
    MODEL,
    MODEL_LOADING,
    SERVER_LOGGING,
    SERVICE,
    TOOLS,
    WORKSPACE,
    WRITES,
    add_command,
)
from llama_agent.config import DaemonConfig
from llama_agent.runtime.models.backend import ModelLoader
from llama_agent.runtime.telemetry.tracing import flush_traces

log = logging.getLogger("llama-agent")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = add_command(
        commands,
        "serve",
        _serve,
        (*TOOLS, MODEL, MODEL_LOADING, CLIENT_WORKSPACE, WRITES, SERVICE),
        logging=SERVER_LOGGING,
        help="run the JSON-RPC daemon over stdio (or, with --listen, as a network service)",
    )
    # LSP clients (vscode-languageclient's stdio transport among them) may pass --stdio.
    serve.add_argument(
        "--stdio", action="store_true", help="accepted for LSP clients; stdio is the only transport"
    )
    # MCP clients call the tools themselves: no model.
    add_command(
        commands,
        "mcp",
        _mcp,
        (*TOOLS, WORKSPACE, WRITES),
        logging=SERVER_LOGGING,
        help="serve the tools as an MCP server over stdio",
    )
    # Each ACP session grants its own `cwd` as the workspace; the model loads on the first prompt.
    add_command(
        commands,
        "acp",
        _acp,
        (*TOOLS, MODEL, WRITES),
        logging=SERVER_LOGGING,
        help="be an ACP agent over stdio (Zed, JetBrains…)",
    )


def _serve(config: DaemonConfig, args: argparse.Namespace) -> int:
    if args.listen is not None:
        return serve_on_network(config, args)
    return serve_on_stdio(config)


def serve_on_network(
    config: DaemonConfig, args: argparse.Namespace, model_loader: ModelLoader | None = None
) -> int:
    """`serve --listen`: the service, until SIGTERM (`model_loader`: tests script the model).
    A bad tenants file is a usage error (2); an address that cannot be bound a failure (1)."""
    from llama_agent.faces.network.run import serve_network
    from llama_agent.services.tenants.config import TenantsFileError

    settings = SERVICE.settings(args)
    assert settings is not None
    try:
        code = serve_network(config, settings, model_loader)
    except TenantsFileError as error:
        raise UsageError(str(error)) from error
    # Worker threads may be deep in a generation: do not wait for them.
    flush_traces()  # os._exit runs no exit handler: export the spans still buffered
    logging.shutdown()
    os._exit(code)


def _mcp(config: DaemonConfig, args: argparse.Namespace) -> int:
    """The MCP face: the same tools, hot-reloaded, for MCP clients."""
    protocol_out = _claim_stdout(config, "MCP ")
    from llama_agent.core import open_core
    from llama_agent.faces.mcp import serve_mcp

    with open_core(config, watch=True) as core:
        return serve_mcp(core, protocol_out)


def _acp(config: DaemonConfig, args: argparse.Namespace) -> int:
    return serve_acp_on_stdio(config)


def serve_acp_on_stdio(config: DaemonConfig, model_loader: ModelLoader | None = None) -> int:
    """The ACP face: the agent loop for ACP clients (`model_loader`: tests script the model)."""
    protocol_out = _claim_stdout(config, "ACP ")
    from llama_agent.core import open_core
    from llama_agent.faces.acp import serve_acp

    with open_core(config, watch=True, model_loader=model_loader) as core:
        return serve_acp(core, protocol_out)


def _claim_stdout(config: DaemonConfig, protocol: str = "") -> BinaryIO:
    """Stdout for the protocol alone ("serving MCP on stdio", or LSP's plain "serving on
    stdio"); call it before anything native is loaded."""
    from llama_agent.faces.stdio import claim_stdout_for_protocol

    protocol_out = claim_stdout_for_protocol()
    dirs = ", ".join(map(str, config.tools.watched_dirs()))
    log.info("llama-agent %s serving %son stdio; tools from %s", __version__, protocol, dirs)
    return protocol_out


def serve_on_stdio(config: DaemonConfig, model_loader: ModelLoader | None = None) -> int:
    """Serve until `exit` or end of input, then end the process (never returns normally)."""
    protocol_out = _claim_stdout(config)
    import os

    from llama_agent.core import open_core
    from llama_agent.faces.lsp.server import server

    # The watcher does the first load while the client starts up; serving closes the core.
    server.configure(open_core(config, watch=True, model_loader=model_loader))
    code = server.serve(sys.stdin.buffer, protocol_out)
    # Worker threads may be deep in a tool call or a generation: do not wait for them.
    flush_traces()  # os._exit runs no exit handler: export the spans still buffered
    logging.shutdown()
    os._exit(code)
