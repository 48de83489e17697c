"""Which tool a request needs, if any, decided before the model's first turn.

A small model asked to name the tool for a request mostly copies a name it saw in the prompt.
It is much better at the opposite question: how likely is this request, written right after
"Tool: NAME"? The router asks that for every offered tool and for "none" (a noisy-channel
classifier: Min et al., "Noisy Channel Language Model Prompting for Few-Shot Text
Classification", ACL 2022), with the tools' own example requests as the shots.

The channel alone learns the shots' wording: a request phrased like none of them goes to the tool
whose shots share its surface (a path draws it to list_dir, "print" in a question about Python
to print). So the router also asks the direct question, the same shots the other way round
("Request: ...\nTool:"), and adds that answer, weighed, to each option's likelihood: the two err
on different requests. A command line (`cat f`, `grep -rn x src`) is routed as what it asks for,
in words (shell_idioms.py). The first turn's grammar then allows only the chosen tool's call,
or only an answer.

A request of several clauses ("read notes.txt, then echo its first word") is routed clause by
clause: the first clause picks the first tool, and each later clause whose tool is clearly
likelier than "none" adds a planned step (a clause such as "and tell me what it says" adds
none: the answer does that). Each planned step's grammar allows only its tool's call.

Measured with the embedded Gemma 3 270M (`python -m evals.routing`): on 188 requests written
apart from the suite, in every style (evals/routing-dev.toml), the right first tool for 63% with
the channel alone, 73% with the direct question added, 79% with command lines in words, 81% with
a how-to question among the no-tool shots. The direct question costs one scored row (see
`candidate_likelihoods`), so it goes first and the channel scores only its SHORTLIST: 81% still,
the suite's 50 tuning requests 98% (94% with the channel alone), and a median 369 ms a request
against the channel alone's 553 ms.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from llama_agent.services.agent.shell_idioms import in_words
from llama_agent.services.tools.registry import Tool

NO_TOOL = "none"
HEADER = "Each request below follows the tool it needs; none marks a request that needs no tool.\n\n"
# Shots per tool: the first of its example requests. A tool shown with many more shots than the
# others draws requests to itself (5 for calc against 2-3 for the rest: 38 of 50 right, 3 each: 39).
# Shell-style shots (`ls docs`, `head -n 2 f`, `echo 'x' > f`) do not buy generality with this
# model: 4 shots each, which brings them in, routed 13 of 19 suite requests right against 16; put
# among the first three instead, 15 of 20 against 17, and 18 of 30 shell-style and terse requests
# of other wording either way (in both, `cat f` and "what's in f" went to list_dir). With the direct
# question beside the channel, 4 each routed 70% of evals/routing-dev.toml right against 81%.
SHOTS_PER_TOOL = 3
# Requests that need no tool, beside the tools' example requests. A fact with a symbol or a number
# in it ("gold") keeps questions of science from calc: with it, the router's first tool was right on
# 47 of the eval's 50 requests (43 without) and "none" on 22 of 22 no-tool questions, 14 of them
# outside the eval (18 without). A how-to question naming a tool's verb ("print") keeps questions
# about programming from the tools: "none" for 40 of evals/routing-dev.toml's 45 no-tool requests
# (33 without), and the right first tool for 81% of them all (79% without).
NO_TOOL_REQUESTS = (
    "What is the largest planet in the solar system?",
    "Good morning!",
    "Who painted the Mona Lisa?",
    "Thanks for your help.",
    "What is the chemical symbol for gold?",
    "How do I print a list in Python?",
)
# How much likelier than "none" (in nats) a clause's tool must be to be called. The first clause:
# about 2.7 times (on the eval's requests, those that need a tool scored 1.5 or more above "none",
# all but one that need none 0.4 or less). A later clause: about 7 times; below that it is usually
# one the answer covers ("tell me what it does"), and a wrong planned call costs more than a
# missed one, since after the plan the model may still call.
FIRST_MARGIN = 1.0
LATER_MARGIN = 2.0
# Where a request's clauses meet: "then", "and", a semicolon. Text in quotes or after ": " is
# content (what to echo, write or print) and is never split.
CLAUSE_BREAK = re.compile(
    r"(?:[,;.]\s*|\s+)(?:and\s+)?then\s+|,\s+and\s+|\s+and\s+|;\s+|\s*&&\s*", re.IGNORECASE
)
CONTENT = re.compile(r"(?<!\w)'[^']*'(?!\w)|\"[^\"]*\"|“[^”]*”|`[^`]*`|:\s.*$", re.DOTALL)
MIN_CLAUSE_WORDS = 2
# A conversation's last requests, with the tools they took, follow the shots: a follow-up ("same
# for Paris", "and in Lima?") is likelier after a request of its kind.
CONVERSATION_SHOTS = 2
# A follow-up that says only what changes ("same for Paris", "and divided by 4?", "what about
# Lima?") reads as little on its own ("Paris" looks like something to echo): it takes the tool of
# the request before it, unless another option is likelier by more than ELLIPTIC_MARGIN nats
# ("and thanks!" needs none).
ELLIPTIC = re.compile(r"^\W*(?:and|same|what about|how about|also|again)\b", re.IGNORECASE)
ELLIPTIC_MARGIN = 3.0

# (prefix, options, continuation, context) -> each option's log-likelihood of the continuation
# after the prefix, the context and the option. The prefix is the same for many requests (worth
# keeping evaluated); the context is this request's own (a conversation's last requests).
Scorer = Callable[[str, Sequence[str], str, str], Awaitable[list[float]]]
# (prefix, context, candidates) -> each candidate's log-likelihood right after prefix and context.
Classifier = Callable[[str, str, Sequence[str]], Awaitable[list[float]]]
# The direct question's weight beside the noisy channel's (see `_direct`): on 188 requests
# written apart from the suite (evals/routing-dev.toml), the channel alone routed 63% right, the
# two together 73% (the suite's tuning requests: 94% and 96%). Any weight from 0.3 to 0.7, with
# FIRST_MARGIN from 0.5 to 1, did within 1 point of the best.
DIRECT_WEIGHT = 0.5
# How many tools, the likeliest asked directly, the channel scores (with "none"): on the dev set,
# 3 routed as well as scoring all of them, at about two thirds of the cost.
SHORTLIST = 3
DIRECT_HEADER = (
    "Each request below is followed by the tool it needs; none marks a request that needs no tool.\n\n"
)


@dataclass(frozen=True)
class Route:
    """The router's choice for the first step (None: no tool) and every option's log-likelihood
    for the request's first clause; `plan` adds the tools that later clauses call for."""

    tool: str | None
    scores: dict[str, float]
    plan: tuple[str, ...] = field(default=())

    @property
    def steps(self) -> tuple[str, ...]:
        """The planned calls' tools, in order; empty when the request needs no tool."""
        return ((self.tool,) if self.tool else ()) + self.plan

    def planned(self, step: int) -> str | None:
        """The tool planned for this step (0 is the first), if any."""
        return self.steps[step] if step < len(self.steps) else None

    def focus(self, step: int) -> str | None:
        """The tool a turn's prompt centres on: this step's, or after the plan, its last one's
        (so that the prompt of the turn after the plan extends the one before)."""
        return self.steps[min(step, len(self.steps) - 1)] if self.steps else None


def shots(tools: Sequence[Tool]) -> list[tuple[str, str]]:
    """(tool, request) pairs: each tool's first example requests (a generic one for a tool without
    examples), interleaved so that no tool's come all together, and the no-tool requests."""
    per_option = [_requests(tool) for tool in tools] + [list(NO_TOOL_REQUESTS)]
    names = [tool.name for tool in tools] + [NO_TOOL]
    rounds = itertools.zip_longest(*per_option)
    return [(names[i], request) for row in rounds for i, request in enumerate(row) if request is not None]


def _requests(tool: Tool) -> list[str]:
    examples = tool.loaded.metadata.examples
    if examples:
        return [example.request for example in examples[:SHOTS_PER_TOOL]]
    description = tool.loaded.metadata.description.strip().rstrip(".")
    return [f"Use {tool.name}: {description[:1].lower()}{description[1:]}."]


def prefix(tools: Sequence[Tool]) -> str:
    return HEADER + "".join(
        f"{option(name)} {' '.join(request.split())}\n\n" for name, request in shots(tools)
    )


def direct_prefix(tools: Sequence[Tool]) -> str:
    """The same shots asked the other way round: the request, then the tool it needs."""
    return DIRECT_HEADER + "".join(_direct_shot(name, request) for name, request in shots(tools))


def _direct_shot(name: str, request: str) -> str:
    return f"Request: {' '.join(request.split())}\nTool: {name}\n\n"


def conversation_shots(earlier: Sequence[tuple[str | None, str]]) -> str:
    """The conversation's last requests as shots: (the tool its first call took, or None, the
    request)."""
    recent = earlier[-CONVERSATION_SHOTS:]
    return "".join(f"{option(tool or NO_TOOL)}{continuation(request)}\n" for tool, request in recent)


def direct_conversation_shots(earlier: Sequence[tuple[str | None, str]]) -> str:
    """`conversation_shots` the other way round, for the direct question."""
    recent = earlier[-CONVERSATION_SHOTS:]
    return "".join(_direct_shot(tool or NO_TOOL, request) for tool, request in recent)


def option(name: str) -> str:
    return f"Tool: {name}\nRequest:"


def continuation(request: str) -> str:
    # Whitespace folded as in the shots; the newline makes "the request ends here" part of it.
    return f" {' '.join(request.split())}\n"


def choose(names: Sequence[str], scores: Sequence[float]) -> Route:
    """The most likely option; on a tie, the first (tools in offered order, then none)."""
    table = dict(zip(names, scores, strict=True))
    best = max(table, key=lambda name: table[name])
    return Route(None if best == NO_TOOL else best, table)


async def route(
    score: Scorer,
    tools: Sequence[Tool],
    request: str,
    allow_none: bool = True,
    earlier: Sequence[tuple[str | None, str]] = (),
    classify: Classifier | None = None,
) -> Route:
    """Route the request's first clause among the tools (and "none" if allowed), and plan a step
    for every later clause that clearly calls for a tool. `earlier`: the conversation's requests
    so far, each with the tool its first call took (None: none)."""
    names = [tool.name for tool in tools]
    first, *later = clauses(request)
    offered = set(names)
    recent = [(t if t in offered else None, r) for t, r in earlier]
    shots = Shots(prefix(tools), conversation_shots(recent))
    if classify is not None:
        shots = replace(
            shots, direct=direct_prefix(tools), conversation_direct=direct_conversation_shots(recent)
        )
    head = await _route_clause(score, shots, names, first, FIRST_MARGIN if allow_none else None, classify)
    before = earlier[-1][0] if earlier else None
    if before in offered and before != head.tool and ELLIPTIC.match(first):
        head = await _follow_up(score, shots, head, before, first)
    plan: list[str] = []
    for clause in later:
        step = await _route_clause(score, shots, names, clause, LATER_MARGIN, classify)
        if step.tool is not None:
            plan.append(step.tool)
    return Route(head.tool, head.scores, tuple(plan))


async def _follow_up(score: Scorer, shots: Shots, head: Route, before: str, clause: str) -> Route:
    """An elliptic follow-up's route: the tool of the request before it, unless the router's own
    choice is clearly likelier (both scored in full)."""
    chosen = head.tool or NO_TOOL
    pair = [option(before), option(chosen)]
    before_score, chosen_score = await score(shots.tools, pair, continuation(clause), shots.conversation)
    if chosen_score - before_score > ELLIPTIC_MARGIN:
        return head
    return Route(before, {**head.scores, before: before_score, chosen: chosen_score})


@dataclass(frozen=True)
class Shots:
    """The router's examples: the tools' (the same for every request) and the conversation's."""

    tools: str
    conversation: str = ""
    direct: str = ""  # the tools' shots the other way round, when the model is asked directly too
    conversation_direct: str = ""


async def _route_clause(
    score: Scorer,
    shots: Shots,
    names: list[str],
    clause: str,
    margin: float | None,
    classify: Classifier | None = None,
) -> Route:
    """The clause's likeliest tool if it beats "none" by `margin`; else no tool. With no margin,
    "none" is no option. With `classify`, the direct question's answer (`_direct`) picks the
    SHORTLIST tools the channel scores, and is added to their likelihoods."""
    options = names if margin is None else [*names, NO_TOOL]
    clause = in_words(clause)  # a shell command line, said in words (shell_idioms.py)
    if classify is not None:
        return await _route_shortlisted(score, shots, options, clause, margin, classify)
    text = continuation(clause)
    channel = await score(shots.tools, [option(name) for name in options], text, shots.conversation)
    best = choose(options, channel)
    if best.tool is None or margin is None:
        return best
    tool_score, none_score = best.scores[best.tool], best.scores[NO_TOOL]
    if none_score == -math.inf:  # pruned after the first tokens: compare the two in full
        pair = [option(best.tool), option(NO_TOOL)]
        tool_score, none_score = await score(shots.tools, pair, text, shots.conversation)
    scores = {**best.scores, best.tool: tool_score, NO_TOOL: none_score}
    return Route(best.tool if tool_score - none_score >= margin else None, scores)


async def _route_shortlisted(
    score: Scorer, shots: Shots, options: list[str], clause: str, margin: float | None, classify: Classifier
) -> Route:
    """Asked directly first (one scored row, about a tenth of the channel's cost), the model's
    SHORTLIST likeliest tools, and "none", are scored by the channel in full; each option's score
    is the two added, and an option left out of the shortlist scores -inf."""
    prior = dict(zip(options, await _direct(classify, shots, options, clause), strict=True))
    tools = [name for name in options if name != NO_TOOL]
    likeliest = set(sorted(tools, key=lambda name: -prior[name])[:SHORTLIST])
    shortlist = [name for name in options if name in likeliest or name == NO_TOOL]
    text = continuation(clause)
    channel = await score(shots.tools, [option(name) for name in shortlist], text, shots.conversation)
    scored = dict(zip(shortlist, channel, strict=True))
    best = choose(options, [scored.get(name, -math.inf) + prior[name] for name in options])
    if best.tool is None or margin is None:
        return best
    tool_score, none_score = best.scores[best.tool], best.scores[NO_TOOL]
    return Route(best.tool if tool_score - none_score >= margin else None, best.scores)


async def _direct(classify: Classifier, shots: Shots, options: Sequence[str], clause: str) -> list[float]:
    """DIRECT_WEIGHT times log P(option | the request), asked directly ("Request: ...\nTool:"),
    normalised over the options. The noisy channel alone favours tools whose shots look like the
    request's wording (a shell command's path draws it to list_dir); the direct question weighs
    what the request asks for; the two err on different requests."""
    context = f"{shots.conversation_direct}Request: {' '.join(clause.split())}\nTool:"
    scores = await classify(shots.direct, context, [f" {name}\n" for name in options])
    peak = max(scores)
    total = peak + math.log(sum(math.exp(value - peak) for value in scores))
    return [DIRECT_WEIGHT * (value - total) for value in scores]


def clauses(request: str) -> list[str]:
    """The request's clauses, in order. A piece of fewer than MIN_CLAUSE_WORDS words stays joined
    to its neighbour: "Who wrote Romeo and Juliet?" is one clause."""
    masked = CONTENT.sub(lambda match: "x" * len(match.group()), request)
    bounds = [0]
    for match in CLAUSE_BREAK.finditer(masked):
        bounds += [match.start(), match.end()]
    bounds.append(len(request))
    spans: list[tuple[int, int]] = []
    for start, end in zip(bounds[::2], bounds[1::2], strict=True):
        if spans and (_short(request, spans[-1]) or _short(request, (start, end))):
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return [request[start:end].strip() for start, end in spans]


def _short(request: str, span: tuple[int, int]) -> bool:
    return len(request[span[0] : span[1]].split()) < MIN_CLAUSE_WORDS
