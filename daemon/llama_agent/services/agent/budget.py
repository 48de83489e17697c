"""How a turn's prompt stays within the model's context, part by part.

A prompt is made of, in order:

| part | budget |
| --- | --- |
| instructions, the offered tools, their worked examples | as the tools make them; never cut |
| earlier turns of the conversation | HISTORY_TOKENS; results up to HISTORY_RESULT_LIMIT characters |
| the request | as sent |
| this run's calls and their results | each result up to OBSERVATION_LIMIT characters |
| the turn's answer | `maxTokens` kept free, up to ANSWER_SHARE of the context |

When the whole does not fit the context, this run's results are cut shorter first, down to
SHARED_RESULT_CHARS each (what most answers need of them). Then the history gives way: its oldest
turns are dropped, half of them at a time, so that the prompts between two drops begin alike and
the model keeps that start evaluated (a follow-up evaluates only what is new). Then the results
are cut further, down to MIN_RESULT_CHARS. Every cut is marked with how much it left out. Only a
request too long by itself still fails (`-32011`): that is no conversation's doing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from llama_agent.runtime.models.backend import ChatMessage
from llama_agent.services.agent.history import Conversation, PastTurn
from llama_agent.services.agent.prompting import PromptContext, history_text

# The most of a prompt the history may take: a quarter of the default 4096-token context, beside
# about 1,500-2,100 tokens of instructions, tools and examples for the bundled tools.
HISTORY_TOKENS = 1024
# At most this share of the context is kept free for a turn's answer, whatever its maxTokens: a
# turn may take more, as far as the context has room (the backends stop it there).
ANSWER_SHARE = 0.25
# This run's results are cut down to this before the history gives way.
SHARED_RESULT_CHARS = 1000
# This run's results are never cut shorter than this to make a prompt fit.
MIN_RESULT_CHARS = 250
# A chat server's tokenizer is not here: its prompts are counted at this many characters a token,
# fewer than English text takes (about 4), so that the estimate errs on the long side.
CHARS_PER_TOKEN = 3

Prompt = str | list[ChatMessage]


@dataclass(frozen=True)
class Budget:
    """The model's context, how a text is counted in it, and what each turn keeps free."""

    context: int
    count: Callable[[str], int]
    max_tokens: int  # the turn's

    @property
    def reserve(self) -> int:
        """Tokens kept free for the turn's answer."""
        return min(self.max_tokens, int(self.context * ANSWER_SHARE))

    def size(self, prompt: str | list[ChatMessage]) -> int:
        text = prompt if isinstance(prompt, str) else "\n".join(message["content"] for message in prompt)
        return self.count(text)

    def fits(self, prompt: str | list[ChatMessage]) -> bool:
        return self.size(prompt) + self.reserve <= self.context


def estimated_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def fitted(
    build: Callable[[PromptContext], Prompt], budget: Budget, conversation: Conversation | None
) -> tuple[Prompt, PromptContext]:
    """The prompt `build` makes with as much of the conversation and of this run's results as
    fits, and what it shows. Dropping turns moves the conversation's window on for good."""
    context = PromptContext(history=_history(budget, conversation))
    prompt = build(context)
    while not budget.fits(prompt):
        smaller = _smaller(context, conversation)
        if smaller is None:
            break  # the request itself is too long: the backend says so
        context = smaller
        prompt = build(context)
    return prompt, context


def _history(budget: Budget, conversation: Conversation | None) -> list[PastTurn]:
    """The turns to show, within HISTORY_TOKENS."""
    if conversation is None:
        return []
    shown = conversation.shown()
    while shown and budget.count(history_text(shown)) > HISTORY_TOKENS:
        conversation.drop_oldest(keep=len(shown) // 2)
        shown = conversation.shown()
    return shown


def _smaller(context: PromptContext, conversation: Conversation | None) -> PromptContext | None:
    """The next smaller context: shorter results (down to SHARED_RESULT_CHARS), half the history,
    then shorter results still; None at the floor."""
    if context.result_limit > SHARED_RESULT_CHARS:
        return replace(context, result_limit=max(SHARED_RESULT_CHARS, context.result_limit // 2))
    if context.history and conversation is not None:
        conversation.drop_oldest(keep=len(context.history) // 2)
        return replace(context, history=conversation.shown())
    if context.result_limit > MIN_RESULT_CHARS:
        return replace(context, result_limit=max(MIN_RESULT_CHARS, context.result_limit // 2))
    return None
