"""The real daemon with a scripted model: `python -m tests.scripted_daemon SCRIPT.json [serve options]`,
or its ACP face: `python -m tests.scripted_daemon SCRIPT.json acp [options]`.

Everything but the model is the daemon's own (protocol, queueing, cancellation, tools), so
end-to-end tests of that logic do not depend on what a real model happens to write.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_agent.cli import parse_command_line, serve_acp_on_stdio, serve_on_stdio
from llama_agent.cli.logs import configure_logging
from llama_agent.config import REPO_ROOT

from tests.scripted_model import ScriptedModel


def editor_launch(
    script: dict[str, Any], directory: Path, tools_dir: Path, cache_dir: Path, config_dir: Path
) -> tuple[list[str], dict[str, str]]:
    """The command and environment an editor's client is told to start: this daemon on `script`."""
    script_file = directory / "script.json"
    script_file.write_text(json.dumps(script))
    command = [sys.executable, "-m", "tests.scripted_daemon", str(script_file)]
    command += ["--tools-dir", str(tools_dir), "--cache-dir", str(cache_dir)]
    env = {
        "PYTHONPATH": str(REPO_ROOT),
        "LLAMA_AGENT_CACHE_DIR": str(cache_dir),
        "LLAMA_AGENT_CONFIG_DIR": str(config_dir),
    }
    return command, env


def main(argv: Sequence[str] | None = None) -> int:
    script, *options = sys.argv[1:] if argv is None else argv
    face = options.pop(0) if options[:1] == ["acp"] else "serve"
    config, args = parse_command_line([face, *options])
    configure_logging(args.verbose, args.log_file)
    loader = ScriptedModel.from_file(Path(script)).loader()
    return serve_acp_on_stdio(config, loader) if face == "acp" else serve_on_stdio(config, loader)


if __name__ == "__main__":
    sys.exit(main())
