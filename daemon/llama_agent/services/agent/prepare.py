"""The prompt starts every run with these tools begins with, evaluated ahead of the first run.

A local model keeps evaluated prompt starts on disk (runtime/models/prompt_states.py), but only
once a run has evaluated them: the first run on a new machine evaluates the router's few-shot
prefix and the agent's instructions, tool descriptions and examples from nothing, seconds on a
small machine. `llama-agent prepare` (run by `make run`'s set-up) does that work beforehand: the
router's two prefixes (its noisy-channel and its direct question), and the completion prompt's
start (instructions, tool descriptions, the fixed examples) for every tool the router may choose.
Nothing is generated but one token a start, and no tool is called.
"""

from __future__ import annotations

from dataclasses import dataclass

from llama_agent.runtime.models.backend import CandidateScorer, ChatBackend, LikelihoodScorer, Turn
from llama_agent.services.agent import routing
from llama_agent.services.agent.loop import Agent, prompt_format
from llama_agent.services.agent.prompting import completion_prefix
from llama_agent.services.agent.tool_selection import MAX_OFFERED

# Any text will do after a start: only the start is kept.
AFTER_START = "User: Hello.\n"
ANY_TEXT = {"type": "string"}


@dataclass(frozen=True)
class Prepared:
    """What was evaluated (or found kept): the router's prefixes, and how many completion starts."""

    router: bool
    starts: int


async def prepare_prompts(agent: Agent) -> Prepared:
    """Have the prompt starts of runs offered every tool kept evaluated, as those runs would."""
    await agent.toolbox.ready()
    tools = agent.select_tools(None)
    model = await agent.models.model()
    if isinstance(model, ChatBackend) or len(tools) > MAX_OFFERED:
        # A server keeps its own cache; past MAX_OFFERED tools, each request is offered its own.
        return Prepared(router=False, starts=0)
    router = False
    async with agent.models.exclusive(model, agent.party):
        if isinstance(model, LikelihoodScorer) and len(tools) >= 1:
            option = routing.option(routing.NO_TOOL)
            await agent.models.log_likelihoods(model, routing.prefix(tools), [option], " Hello.\n")
            router = True
        if isinstance(model, CandidateScorer) and len(tools) >= 1:
            question = routing.direct_prefix(tools)
            await agent.models.candidate_likelihoods(model, question, "Request: Hello.\nTool:", [" none\n"])
        if prompt_format(model) != "completion":
            return Prepared(router, 0)
        # One a focus, though the focus now orders only the examples after it: the same start.
        starts = list(dict.fromkeys(completion_prefix(tools, focus) for focus in tools))
        for start in starts:
            turn = Turn(start + AFTER_START, ANY_TEXT, max_tokens=1, cache_prefixes=(start,))
            await agent.models.generate(model, turn)
    return Prepared(router, len(starts))
