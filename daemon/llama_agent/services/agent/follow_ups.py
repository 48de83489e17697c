"""Arithmetic follow-ups, said in full.

After "what's 12*7" (84), people go on with "and divided by 4?", "times 3", "add 10 to that",
"take 15% off it", "and the square root of that?": the number they work on is the last result,
left unsaid. The small model copies what it reads, and "and divided by 4" is no expression: it
wrote `and divided by 4`, which the calculator refused. Such a follow-up is shown to the router
and the model as the request it stands for, with the last result put in: "What is 84 / 4?",
which they handle as any other. The conversation keeps the person's own words.

Only a request that is nothing but such a continuation (an operation and its number) is
rewritten, and only when the conversation's last result is a bare number: "divided by 4" with no
number before it, or a sentence that goes on about something else, is left as it was.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from llama_agent.services.agent.history import PastTurn

_NUMBER = r"-?\d+(?:\.\d+)?"
_N = rf"(?P<n>{_NUMBER})"
# What the follow-up works on: the last result, by name or left out.
_THAT = r"(?:that|it|this|the result|the answer|the total)"
# Words that may open a follow-up, and close it.
_OPENING = (
    r"^\s*(?:(?:and|then|now|ok(?:ay)?|so|also|what about|how about)\b[\s,]*)*(?:(?:what(?:'s| is)|and)\s+)?"
)
_CLOSING = r"\s*(?:then|instead|now|please|pls)?\s*[?.!]*\s*$"

# Each continuation: a pattern of the part between opening and closing, and the expression it
# stands for, `x` being the last result.
_CONTINUATIONS: tuple[tuple[str, Callable[[str, str], str]], ...] = (
    (rf"(?:{_THAT}\s+)?(?:divided\s+by|over|/)\s*{_N}", lambda x, n: f"{x} / {n}"),
    (rf"divide\s+{_THAT}\s+by\s+{_N}", lambda x, n: f"{x} / {n}"),
    (rf"(?:{_THAT}\s+)?(?:times|multiplied\s+by|\*|x)\s*{_N}", lambda x, n: f"{x} * {n}"),
    (rf"multiply\s+{_THAT}\s+by\s+{_N}", lambda x, n: f"{x} * {n}"),
    (rf"(?:{_THAT}\s+)?(?:plus|\+)\s*{_N}", lambda x, n: f"{x} + {n}"),
    (rf"add\s+{_N}(?:\s+to\s+{_THAT})?", lambda x, n: f"{x} + {n}"),
    (rf"(?:{_THAT}\s+)?(?:minus|-)\s*{_N}", lambda x, n: f"{x} - {n}"),
    (rf"(?:subtract|take\s+away)\s+{_N}(?:\s+from\s+{_THAT})?", lambda x, n: f"{x} - {n}"),
    (rf"{_N}\s*(?:%|percent)\s+of\s+{_THAT}", lambda x, n: f"{x} * {n} / 100"),
    (
        rf"(?:take\s+|with\s+)?{_N}\s*(?:%|percent)\s+off(?:\s+{_THAT})?",
        lambda x, n: f"{x} * (100 - {n}) / 100",
    ),
    (rf"(?:the\s+)?square\s+root\s+of\s+{_THAT}", lambda x, n: f"sqrt({x})"),
    (rf"{_THAT}\s+squared", lambda x, n: f"{x} ^ 2"),
    (rf"half\s+(?:of\s+)?{_THAT}", lambda x, n: f"{x} / 2"),
    (rf"double\s+{_THAT}", lambda x, n: f"{x} * 2"),
)
_PATTERNS = tuple(
    (re.compile(_OPENING + f"(?:{pattern})" + _CLOSING, re.IGNORECASE), expression)
    for pattern, expression in _CONTINUATIONS
)
_BARE_NUMBER = re.compile(rf"\s*({_NUMBER})\s*")


def said_in_full(request: str, earlier: Sequence[PastTurn]) -> str:
    """`request` with the number it continues put in ("What is 84 / 4?"), if it is an arithmetic
    follow-up of the conversation's last result (`earlier`, oldest first); else `request`."""
    last = _last_number(earlier)
    if last is None:
        return request
    for pattern, expression in _PATTERNS:
        match = pattern.match(request)
        if match is not None:
            return f"What is {expression(last, match.groupdict().get('n') or '')}?"
    return request


def _last_number(earlier: Sequence[PastTurn]) -> str | None:
    """The last turn's last result, if it succeeded and is a bare number."""
    if not earlier or not earlier[-1].steps:
        return None
    step = earlier[-1].steps[-1]
    match = _BARE_NUMBER.fullmatch(step.result)
    return match.group(1) if match is not None and not step.is_error else None
