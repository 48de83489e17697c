"""Reading a model turn as it streams: the answer's text so far, and a turn that runs away."""

from __future__ import annotations

import re
from collections.abc import Iterator

# An answer turn starts `{"answer": "`, with any whitespace (`\s`) between its tokens.
_ANSWER_OPENING = '{"answer":"'
_SPACE_BEFORE = frozenset({0, 1, 9, 10})  # the positions in _ANSWER_OPENING whitespace may precede
_SPACES = re.compile(r"\s*")
_STRING_SPECIAL = re.compile(r'["\\]')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

# A turn whose end is one piece of text repeated: at least this many characters of it, in at
# least three copies, is a model stuck in a loop (the small default model does this when a
# tool refuses it), not an answer that will ever end by itself.
RUNAWAY_MIN_CHARS = 80
RUNAWAY_MIN_COPIES = 3
RUNAWAY_MAX_UNIT = 120
# The longest end of a turn `runaway_start` compares: three copies of the longest unit.
RUNAWAY_WINDOW = RUNAWAY_MAX_UNIT * RUNAWAY_MIN_COPIES
# Every run `runaway_start` finds is at least one unit plus this many characters long (80 ≥ u + 8
# for short units; 3u ≥ u + 8 for the others), so its last characters recur one unit back.
_RECURRING_CHARS = 8


def partial_answer(turn: str) -> str | None:
    """The answer text of an `{"answer": "...` turn as far as it has been written, decoded;
    None if the turn is not an answer. An escape cut off at the end is left out."""
    stream = AnswerStream()
    text = stream.feed(turn)
    return text if stream.is_answer else None


class AnswerStream:
    """`partial_answer` for a turn that arrives piece by piece: each piece is read once, so a
    turn of n pieces costs O(its length), not O(n * its length) as re-reading the whole turn
    at every piece would. `feed` returns the answer text the piece completed; an escape cut
    between pieces is held back until its end arrives."""

    def __init__(self) -> None:
        self.is_answer: bool | None = None  # None: not known yet (the start is still arriving)
        self.length = 0  # characters of answer text decoded so far
        self._matched = 0  # characters of _ANSWER_OPENING seen so far
        self._held = ""  # the start of an escape cut off at the end of the last piece
        self._closed = False  # the answer's closing quote has been read

    def feed(self, piece: str) -> str:
        if self.is_answer is None:
            piece = self._opening(piece)
        if not self.is_answer or self._closed:
            return ""
        text = self._body(self._held + piece)
        self.length += len(text)
        return text

    def _opening(self, piece: str) -> str:
        """Reads the `{"answer": "` that starts an answer; returns what follows it."""
        i = 0
        while i < len(piece):
            if self._matched in _SPACE_BEFORE:
                i = _skip_spaces(piece, i)
            if i == len(piece):
                break
            if piece[i] != _ANSWER_OPENING[self._matched]:
                self.is_answer = False
                return ""
            self._matched += 1
            i += 1
            if self._matched == len(_ANSWER_OPENING):
                self.is_answer = True
                return piece[i:]
        return ""

    def _body(self, text: str) -> str:
        """The decoded string `text` starts, up to its closing quote or a cut-off escape."""
        out: list[str] = []
        i = 0
        self._held = ""
        while (special := _STRING_SPECIAL.search(text, i)) is not None:
            j = special.start()
            out.append(text[i:j])
            if text[j] == '"':
                self._closed = True
                return "".join(out)
            escape = _escape_at(text, j)
            if escape is None:
                self._held = text[j:]
                return "".join(out)
            out.append(escape[0])
            i = j + escape[1]
        out.append(text[i:])
        return "".join(out)


def _skip_spaces(text: str, i: int) -> int:
    spaces = _SPACES.match(text, i)
    return spaces.end() if spaces is not None else i


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
    if len(text) < RUNAWAY_MIN_CHARS:
        return None
    for unit in _recurrences(text, min(RUNAWAY_MAX_UNIT, len(text) // RUNAWAY_MIN_COPIES)):
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


def _recurrences(text: str, longest: int) -> Iterator[int]:
    """The distances back, shortest first and up to `longest`, at which the last
    _RECURRING_CHARS characters of `text` occur again. A unit repeated into a run has its run's
    end recur one unit back, so only these units need comparing: in ordinary text there are
    none, and the search is one `rfind`."""
    key = text[-_RECURRING_CHARS:]
    end = len(text) - 1  # an occurrence at least one character back
    lowest = max(0, len(text) - _RECURRING_CHARS - longest)
    while (found := text.rfind(key, lowest, end)) >= 0:
        yield len(text) - _RECURRING_CHARS - found
        end = found + _RECURRING_CHARS - 1


class RunawayGuard:
    """Fed a turn piece by piece; says stop once the turn ends in a runaway repetition.

    A repetition is looked for in the turn's last RUNAWAY_WINDOW characters only (the longest
    run `runaway_start` looks at), so each piece costs the same however long the turn is; the
    whole turn is read once, when a repetition is found, to tell where it began."""

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self._tail = ""
        self.cut_at: int | None = None

    @property
    def text(self) -> str:
        """The turn so far (joined on each call: read it once the turn is over)."""
        return "".join(self._pieces)

    def feed(self, piece: str) -> bool:
        self._pieces.append(piece)
        if self.cut_at is None:
            self._tail = (self._tail + piece)[-RUNAWAY_WINDOW:]
            if runaway_start(self._tail) is not None:
                self.cut_at = runaway_start(self.text)
        return self.cut_at is not None
