"""Exit codes, from one table of exception classes: a command raises, `main` maps.

0: done. 1: the command ran and failed (a tool's error result, a build that failed, a file that
could not be written, a grant the person declined). 2: the command was asked for something that
cannot be done as asked (argparse's own usage errors, an unknown tool, arguments that do not fit
its schema, a model that cannot be used or a prompt that does not fit it).
"""

from __future__ import annotations

from llama_agent.common.text import visible

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CommandFailed(Exception):
    """The command ran and could not do its job; the message says why, for the person."""


class UsageError(Exception):
    """The command cannot do what it was asked as asked; the message says why and what to do."""


def exit_code_for(error: BaseException) -> int | None:
    """The exit code of a command that raised `error`; None for an error nobody expected (a bug:
    let its traceback show)."""
    for kind, code in _exit_codes():
        if isinstance(error, kind):
            return code
    return None


def message_for(error: BaseException) -> str:
    """What the person reads: the error's words, made visible (they may quote a tool's words, a
    file name, a server's answer). A failed build's keep their lines: they quote the compiler."""
    from llama_agent.cli.build import BuildError

    return visible(str(error), keep="\n\t" if isinstance(error, BuildError) else "")


def _exit_codes() -> tuple[tuple[type[BaseException], int], ...]:
    """The table, first match wins. Imported only when a command fails: some of the classes'
    modules take a while to import, and `tools new` or `--help` needs none of them."""
    from llama_agent.cli.build import BuildError
    from llama_agent.cli.scaffold import ScaffoldError
    from llama_agent.common.errors import AgentError
    from llama_agent.runtime.tools.grants_file import GrantsFileError

    return (
        (UsageError, EXIT_USAGE),
        (CommandFailed, EXIT_FAILURE),
        # The daemon's own errors, as its faces answer them to clients, are the request's fault:
        # an unknown tool, arguments that do not fit its schema, a request the agent refuses, a
        # model that cannot serve it, a prompt too long for its context.
        (AgentError, EXIT_USAGE),
        (ScaffoldError, EXIT_USAGE),
        (BuildError, EXIT_FAILURE),
        (GrantsFileError, EXIT_FAILURE),
        (OSError, EXIT_FAILURE),
    )
