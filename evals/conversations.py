"""Loading and validating the multi-turn conversations (evals/conversations.toml; the format is
documented there).

A conversation is 2-4 turns sent in one daemon session, each an `agent/run` with the session's
id, so a follow-up ("and divided by 4?") can use what came before. A turn expects what a task
expects (evals/tasks.py's `parse_expectation` checks it), except a cancelled turn: the runner
cancels its run as soon as it starts, and only that the cancellation took is checked.
Everything wrong is reported as a TaskError naming the conversation and the turn at fault.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.tasks import (
    EXPECTATION_KEYS,
    ID_PATTERN,
    Split,
    Task,
    TaskError,
    check_keys,
    check_selection,
    parse_expectation,
    parse_split,
    read_toml,
)

CONVERSATION_KEYS = {"id", "split", "turn"}
TURN_KEYS = {"cancel", *EXPECTATION_KEYS}
MIN_TURNS = 2
MAX_TURNS = 4

# The coverage the conversations must keep (check_conversations).
MIN_CONVERSATIONS = 12
MIN_WITH_CANCEL = 3
MIN_RESENDING = 1
MIN_HELDOUT_CONVERSATIONS = 4

DEFAULT_CONVERSATIONS_FILE = Path(__file__).with_name("conversations.toml")


@dataclass(frozen=True)
class ConversationTurn:
    prompt: str
    # None for a cancelled turn (not scored); else what the turn expects, as a task whose id is
    # "<conversation id>/<turn number>".
    expected: Task | None
    # The prompt is the cancelled turn's before it, a newline, then more: as a chat client
    # resends a message that was stopped together with the next one.
    resends_cancelled: bool = False

    @property
    def cancel(self) -> bool:
        return self.expected is None


@dataclass(frozen=True)
class Conversation:
    id: str
    split: Split
    turns: tuple[ConversationTurn, ...]

    @property
    def has_cancel(self) -> bool:
        return any(turn.cancel for turn in self.turns)


def turn_id(conversation_id: str, index: int) -> str:
    """The id of a conversation's turn, `index` from 0: "conv-x/1" is the first."""
    return f"{conversation_id}/{index + 1}"


def load_conversations(path: Path = DEFAULT_CONVERSATIONS_FILE) -> list[Conversation]:
    return parse_conversations(read_toml(path), str(path))


def parse_conversations(document: Mapping[str, Any], source: str = "conversations") -> list[Conversation]:
    unknown = sorted(set(document) - {"conversation"})
    if unknown:
        raise TaskError(
            f"{source}: unknown top-level key {unknown[0]!r} (conversations are [[conversation]] tables)"
        )
    entries = document.get("conversation")
    if not isinstance(entries, list) or not entries:
        raise TaskError(f"{source}: no [[conversation]] tables")
    conversations = [_parse_conversation(entry, index, source) for index, entry in enumerate(entries, 1)]
    counts = Counter(conversation.id for conversation in conversations)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise TaskError(f"{source}: conversation id {duplicates[0]!r} is used more than once")
    return conversations


def _parse_conversation(entry: Any, index: int, source: str) -> Conversation:
    if not isinstance(entry, dict):
        raise TaskError(f"{source}: conversation #{index} is not a table")
    raw_id = entry.get("id")
    named = repr(raw_id) if isinstance(raw_id, str) else f"#{index}"
    name = f"{source}: conversation {named}"

    def fail(message: str) -> TaskError:
        return TaskError(f"{name}: {message}")

    check_keys(entry, CONVERSATION_KEYS, fail)
    if not isinstance(raw_id, str) or not ID_PATTERN.match(raw_id):
        raise fail("'id' must be a lower-case string of letters, digits, '-' and '_'")
    split = parse_split(entry.get("split", "tuning"), fail)
    raw_turns = entry.get("turn")
    if not isinstance(raw_turns, list) or not all(isinstance(turn, dict) for turn in raw_turns):
        raise fail("its turns must be [[conversation.turn]] tables")
    if not MIN_TURNS <= len(raw_turns) <= MAX_TURNS:
        raise fail(f"{len(raw_turns)} turns; a conversation has {MIN_TURNS} to {MAX_TURNS}")
    turns: list[ConversationTurn] = []
    for number, raw in enumerate(raw_turns, start=1):
        turns.append(_parse_turn(raw, raw_id, number, split, turns, _turn_failure(name, number)))
    if turns[-1].cancel:
        raise _turn_failure(name, len(turns))("the last turn cannot be cancelled: nothing would follow it")
    return Conversation(raw_id, split, tuple(turns))


def _turn_failure(name: str, number: int) -> Callable[[str], TaskError]:
    def fail(message: str) -> TaskError:
        return TaskError(f"{name}, turn {number}: {message}")

    return fail


def _parse_turn(
    raw: Mapping[str, Any],
    conversation_id: str,
    number: int,
    split: Split,
    earlier: Sequence[ConversationTurn],
    fail: Callable[[str], TaskError],
) -> ConversationTurn:
    check_keys(raw, TURN_KEYS, fail)
    cancel = raw.get("cancel", False)
    if not isinstance(cancel, bool):
        raise fail("'cancel' must be true or false")
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise fail("'prompt' must be a non-empty string")
    if cancel:
        scored = sorted(set(raw) - {"prompt", "cancel"})
        if scored:
            raise fail(f"a cancelled turn is not scored: {scored[0]!r} has no place in it")
        return ConversationTurn(prompt, None)
    expected = parse_expectation(raw, turn_id(conversation_id, number - 1), fail, split)
    before = earlier[-1] if earlier else None
    resends = before is not None and before.cancel and prompt.startswith(before.prompt + "\n")
    return ConversationTurn(prompt, expected, resends)


def check_conversations(conversations: Sequence[Conversation]) -> None:
    """Raise TaskError unless the conversations keep their coverage: enough of them, enough with
    a cancelled turn, one that resends a cancelled message, enough held out."""
    problems = []
    if len(conversations) < MIN_CONVERSATIONS:
        problems.append(f"{len(conversations)} conversations, fewer than {MIN_CONVERSATIONS}")
    cancelling = sum(conversation.has_cancel for conversation in conversations)
    if cancelling < MIN_WITH_CANCEL:
        problems.append(f"{cancelling} conversations with a cancelled turn, fewer than {MIN_WITH_CANCEL}")
    resending = sum(any(turn.resends_cancelled for turn in c.turns) for c in conversations)
    if resending < MIN_RESENDING:
        problems.append(
            f"{resending} conversations resend a cancelled message with the next, fewer than {MIN_RESENDING}"
        )
    heldout = sum(conversation.split == "heldout" for conversation in conversations)
    if heldout < MIN_HELDOUT_CONVERSATIONS:
        problems.append(f"{heldout} heldout conversations, fewer than {MIN_HELDOUT_CONVERSATIONS}")
    if problems:
        raise TaskError("the conversations lack coverage: " + "; ".join(problems))


def select_conversations(
    conversations: Sequence[Conversation], only: Iterable[str] = (), splits: Iterable[str] = ()
) -> list[Conversation]:
    """The conversations named in `only` (all if empty) whose split is in `splits` (any if empty)."""
    wanted, wanted_splits = list(only), set(splits)
    check_selection(splits=wanted_splits)
    known = {conversation.id for conversation in conversations}
    missing = [name for name in wanted if name not in known]
    if missing:
        raise TaskError(f"no conversation with id {missing[0]!r}")
    return [
        conversation
        for conversation in conversations
        if (not wanted or conversation.id in wanted)
        and (not wanted_splits or conversation.split in wanted_splits)
    ]
