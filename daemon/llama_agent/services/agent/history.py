"""A conversation: the requests of one chat, and what came of each, as the agent's next runs see them.

Chat clients (CodeCompanion, Zed, a script with a `sessionId`) send only the new message and
expect the agent to remember the rest. A `Conversation` keeps its turns: the request, the calls
made and their results, the answer, and how the turn ended. The prompts of its next runs show the
turns that were answered (or cut short), newest last, within a token budget (prompting.py), and
the router and the argument snapping read them too.

A cancelled turn is recorded as cancelled and left out of later prompts, so that it is never
answered after the fact. Chat clients that were stopped resend the stopped message together with
the next one; `Conversation.unanswered` takes that part off again.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from llama_agent.common.errors import InvalidParams, TooManySessions
from llama_agent.common.text import quoted

# answered: the model answered (maxSteps too). stopped: a turn was cut short (maxTokens, a
# runaway repetition, a turn that did not parse): what it said is kept. cancelled: the client
# stopped it. failed: an error ended it (no model, a bad request).
Outcome = Literal["answered", "stopped", "cancelled", "failed"]
# The outcomes whose turns later prompts show: the others have no answer to build on.
SHOWN: frozenset[Outcome] = frozenset({"answered", "stopped"})
# Conversations one session keeps at once: past this, a new one replaces the least recently
# used idle one, so that a client cannot make the daemon hold conversations without bound.
MAX_CONVERSATIONS = 32
# Turns one conversation keeps on record; the oldest go first (prompts show far fewer).
MAX_TURNS = 200
# Of each result, this much is kept on record (prompts show at most 600 characters of an earlier
# one): a session's memory stays bounded whatever its tools return.
RECORDED_RESULT_CHARS = 8000


@dataclass(frozen=True)
class AgentStep:
    tool: str
    arguments: dict[str, Any]
    result: str
    is_error: bool


@dataclass(frozen=True)
class PastTurn:
    """One request of a conversation and what came of it."""

    request: str
    steps: tuple[AgentStep, ...]
    answer: str
    outcome: Outcome

    @property
    def first_tool(self) -> str | None:
        """The tool of the turn's first call: what the router took the request to need."""
        return self.steps[0].tool if self.steps else None


@dataclass
class Conversation:
    """The turns of one chat, oldest first. Runs in it take turns (`lock`): each sees the one
    before. `window_start` is the first turn later prompts may show: it moves on in steps, when
    the history outgrows its budget, so that the prompts between two moves share their start
    (and the model keeps it evaluated)."""

    id: str
    turns: list[PastTurn] = field(default_factory=list)
    window_start: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def shown(self) -> list[PastTurn]:
        """The turns a prompt may show, oldest first."""
        return [turn for turn in self.turns[self.window_start :] if turn.outcome in SHOWN]

    def unanswered(self, prompt: str) -> str:
        """The part of `prompt` still to answer. After a cancelled turn, a client that resends the
        stopped message with the next one (CodeCompanion does) gets the next one answered; the
        stopped message sent again on its own is a retry, and answered."""
        last = self.turns[-1] if self.turns else None
        if last is None or last.outcome != "cancelled":
            return prompt
        stopped, sent = last.request.strip(), prompt.strip()
        if sent.startswith(stopped) and len(sent) > len(stopped):
            rest = sent[len(stopped) :].strip()
            return rest or prompt
        return prompt

    def record(self, turn: PastTurn) -> None:
        steps = tuple(replace(step, result=_kept(step.result)) for step in turn.steps)
        self.turns.append(replace(turn, steps=steps))
        if len(self.turns) > MAX_TURNS:
            dropped = len(self.turns) - MAX_TURNS
            del self.turns[:dropped]
            self.window_start = max(0, self.window_start - dropped)

    def drop_oldest(self, keep: int) -> None:
        """Move the window on so that it shows at most the `keep` newest shown turns."""
        shown = [i for i in range(self.window_start, len(self.turns)) if self.turns[i].outcome in SHOWN]
        if len(shown) > keep:
            self.window_start = shown[len(shown) - keep] if keep else len(self.turns)


class Conversations:
    """One session's conversations by id, least recently used first."""

    def __init__(self, limit: int = MAX_CONVERSATIONS) -> None:
        self._limit = limit
        self._held: OrderedDict[str, Conversation] = OrderedDict()

    def __iter__(self) -> Iterator[Conversation]:
        return iter(list(self._held.values()))

    def new(self, conversation_id: str | None = None) -> Conversation:
        """A new conversation (its id made here unless given), making room for it."""
        self._make_room()
        conversation = Conversation(conversation_id or f"s-{secrets.token_hex(8)}")
        self._held[conversation.id] = conversation
        return conversation

    def get(self, conversation_id: str) -> Conversation:
        """The conversation; -32602 on `sessionId` if there is none by that id."""
        conversation = self._held.get(conversation_id)
        if conversation is None:
            raise InvalidParams(
                f"no such session: {quoted(conversation_id[:80])} (start one with agent/newSession, "
                'or send session: "new")',
                "sessionId",
            )
        self._held.move_to_end(conversation_id)
        return conversation

    def forget(self, conversation_id: str) -> bool:
        return self._held.pop(conversation_id, None) is not None

    def _make_room(self) -> None:
        if len(self._held) < self._limit:
            return
        idle = next((key for key, held in self._held.items() if not held.lock.locked()), None)
        if idle is None:
            raise TooManySessions(
                f"too many sessions: all {self._limit} are running; wait for one to end, or forget one"
            )
        del self._held[idle]


def _kept(result: str) -> str:
    if len(result) <= RECORDED_RESULT_CHARS:
        return result
    return f"{result[:RECORDED_RESULT_CHARS]} [cut: {len(result) - RECORDED_RESULT_CHARS} more characters]"
