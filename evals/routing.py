"""The router alone, on many requests, in seconds: `python -m evals.routing`.

`make eval` runs the whole agent, a daemon a task, in about 20 minutes; the router's choice (the
first tool, and the tools planned for later clauses) is most of what decides a task, and tuning
it needs many more varied requests than the suite has, measured in a minute. This loads the
model and the bundled tools in-process, as `llama-agent run` does, routes each request as
`agent/run` would at its start, and prints what was right per tool and per style, and each miss.

The requests: `evals/routing-dev.toml` (written for tuning the router, a dev set), and the
tuning tasks of `evals/tasks.toml`. Held-out and fresh tasks are measured by `make eval`, not
here (`--split` can add them, for a final figure, never while tuning).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from llama_agent.config import DaemonConfig
from llama_agent.core import open_core
from llama_agent.runtime.models.backend import CandidateScorer, LikelihoodScorer
from llama_agent.services.agent import routing
from llama_agent.services.agent.loop import Agent

from evals.tasks import DEFAULT_TASKS_FILE, load_tasks, read_toml

DEV_FILE = Path(__file__).with_name("routing-dev.toml")
TOOLS = ("echo", "print", "calc", "read_file", "list_dir", "search_text", "write_file", "datetime")
OPTIONS = (*TOOLS, routing.NO_TOOL)


@dataclass(frozen=True)
class Request:
    text: str
    tool: str  # the first tool, or routing.NO_TOOL
    plan: tuple[str, ...]  # the later clauses' tools
    group: str  # a dev request's style, or the suite's split


@dataclass(frozen=True)
class Outcome:
    request: Request
    tool: str
    plan: tuple[str, ...]
    seconds: float

    @property
    def first_right(self) -> bool:
        return self.tool == self.request.tool

    @property
    def all_right(self) -> bool:
        return self.first_right and self.plan == self.request.plan


def dev_requests(path: Path) -> list[Request]:
    entries = read_toml(path).get("request", [])
    requests = []
    for index, entry in enumerate(entries):
        tool, plan = entry["tool"], tuple(entry.get("plan", ()))
        if tool not in OPTIONS or any(step not in TOOLS for step in plan):
            raise SystemExit(f"{path}: request {index}: unknown tool in {tool!r}, {plan!r}")
        requests.append(Request(entry["text"], tool, plan, entry.get("style", "dev")))
    return requests


def suite_requests(path: Path, splits: Sequence[str]) -> list[Request]:
    return [
        Request(task.prompt, (task.tools or (routing.NO_TOOL,))[0], task.tools[1:], f"suite:{task.split}")
        for task in load_tasks(path)
        if task.split in splits
    ]


async def route_all(agent: Agent, requests: Sequence[Request]) -> list[Outcome]:
    await agent.toolbox.ready()
    tools = [tool for tool in agent.select_tools(None) if tool.name in TOOLS]
    model = await agent.models.model()
    if not isinstance(model, LikelihoodScorer):
        raise SystemExit("the model cannot score: the router needs a local model")
    score = partial(agent.models.log_likelihoods, model)
    classify = (
        partial(agent.models.candidate_likelihoods, model) if isinstance(model, CandidateScorer) else None
    )
    outcomes = []
    async with agent.models.exclusive(model, agent.party):
        for request in requests:
            start = time.perf_counter()
            route = await routing.route(score, tools, request.text, classify=classify)
            seconds = time.perf_counter() - start
            outcomes.append(Outcome(request, route.tool or routing.NO_TOOL, route.plan, seconds))
    return outcomes


def _rate(hits: int, total: int) -> str:
    return f"{hits}/{total} ({100 * hits / total:.0f}%)" if total else "-"


def report(outcomes: Sequence[Outcome], show_misses: bool) -> str:
    lines = []
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        source = "suite" if outcome.request.group.startswith("suite:") else "dev"
        groups[source].append(outcome)
    for source, group in sorted(groups.items()):
        first = sum(o.first_right for o in group)
        whole = sum(o.all_right for o in group)
        lines.append(f"{source}: first tool {_rate(first, len(group))}, with plan {_rate(whole, len(group))}")
    lines.append("")
    lines.append(f"{'expected':<12} {'right':>12}  wrongly chosen instead")
    for tool in OPTIONS:
        mine = [o for o in outcomes if o.request.tool == tool]
        wrong = Counter(o.tool for o in mine if not o.first_right)
        lines.append(f"{tool:<12} {_rate(sum(o.first_right for o in mine), len(mine)):>12}  {dict(wrong)}")
    lines.append("")
    by_group: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_group[outcome.request.group].append(outcome)
    for name, members in sorted(by_group.items()):
        lines.append(f"{name:<16} {_rate(sum(o.first_right for o in members), len(members))}")
    seconds = sorted(o.seconds for o in outcomes)
    median, longest = seconds[len(seconds) // 2] * 1000, seconds[-1] * 1000
    lines.append(f"\nrouting time: median {median:.0f} ms, max {longest:.0f} ms")
    if show_misses:
        lines.append("\nmisses:")
        for o in outcomes:
            if not o.all_right:
                got = "+".join((o.tool, *o.plan))
                want = "+".join((o.request.tool, *o.request.plan))
                lines.append(f"  {want:<22} got {got:<22} {o.request.text}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.routing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dev", type=Path, default=DEV_FILE, help="the dev requests (default: %(default)s)")
    parser.add_argument("--tasks", type=Path, default=DEFAULT_TASKS_FILE)
    parser.add_argument(
        "--split", action="append", choices=("tuning", "heldout"), help="suite splits (default: tuning)"
    )
    parser.add_argument("--no-misses", action="store_true", help="print the totals only")
    args = parser.parse_args(argv)
    requests = dev_requests(args.dev) + suite_requests(args.tasks, args.split or ["tuning"])
    with open_core(DaemonConfig(), watch=False) as core:
        outcomes = asyncio.run(route_all(core.agent, requests))
    print(report(outcomes, not args.no_misses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
