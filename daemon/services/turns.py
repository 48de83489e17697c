"""Reading a model turn as it streams: the answer's text so far, and a turn that runs away."""

from __future__ import annotations

import re

_ANSWER_START = re.compile(r'\s*\{\s*"answer"\s*:\s*"')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

# A turn whose end is one piece of text repeated: at least this many characters of it, in at
# least three copies, is a model stuck in a loop (the small default model does this when a
# tool refuses it), not an answer that will ever end by itself.
RUNAWAY_MIN_CHARS = 80
RUNAWAY_MIN_COPIES = 3
RUNAWAY_MAX_UNIT = 120


def partial_answer(turn: str) -> str | None:
    """The answer text of an `{"answer": "...` turn as far as it has been written, decoded;
    None if the turn is not an answer. An escape cut off at the end is left out."""
    start = _ANSWER_START.match(turn)
    if start is None:
        return None
    out: list[str] = []
    i = start.end()
    while i < len(turn) and turn[i] != '"':
        if turn[i] != "\\":
            out.append(turn[i])
            i += 1
            continue
        escape = _escape_at(turn, i)
        if escape is None:
            break
        text, length = escape
        out.append(text)
        i += length
    return "".join(out)


def _escape_at(turn: str, i: int) -> tuple[str, int] | None:
    """The escape starting at `turn[i]` (a backslash): its text and length; None if cut off."""
    if i + 1 >= len(turn):
        return None
    code = turn[i + 1]
    if code != "u":
        return _ESCAPES.get(code, code), 2
    unit = _hex_unit(turn, i)
    if unit is None:
        return None
    if 0xD800 <= unit < 0xDC00:  # a high surrogate: its pair may follow
        if len(turn) < i + 12:
            return None
        low = _hex_unit(turn, i + 6) if turn[i + 6 : i + 8] == "\\u" else None
        if low is not None and 0xDC00 <= low < 0xE000:
            return chr(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)), 12
        return "\ufffd", 6
    return ("\ufffd" if 0xDC00 <= unit < 0xE000 else chr(unit)), 6


def _hex_unit(turn: str, i: int) -> int | None:
    """The four hex digits after `turn[i:i+2]` (a `\\u`); None if not all written yet."""
    digits = turn[i + 2 : i + 6]
    if len(digits) < 4:
        return None
    try:
        return int(digits, 16)
    except ValueError:
        return 0xFFFD


def runaway_start(text: str) -> int | None:
    """Where the repetition at the end of `text` begins (after its first copy), if it ends in
    one unit of up to RUNAWAY_MAX_UNIT characters repeated into a run of RUNAWAY_MIN_CHARS."""
    for unit in range(1, min(RUNAWAY_MAX_UNIT, len(text) // RUNAWAY_MIN_COPIES) + 1):
        copies = max(RUNAWAY_MIN_COPIES, -(-RUNAWAY_MIN_CHARS // unit))
        span = unit * copies
        if span > len(text):
            continue
        tail = text[-span:]
        if tail == tail[:unit] * copies:
            start = len(text) - span
            while start > 0 and text[start - 1] == text[start - 1 + unit]:
                start -= 1  # the loop began earlier, with the same text
            return start + unit
    return None


class RunawayGuard:
    """Fed a turn piece by piece; says stop once the turn ends in a runaway repetition."""

    def __init__(self) -> None:
        self.text = ""
        self.cut_at: int | None = None

    def feed(self, piece: str) -> bool:
        self.text += piece
        if self.cut_at is None:
            self.cut_at = runaway_start(self.text)
        return self.cut_at is not None
