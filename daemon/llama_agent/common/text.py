"""Text from outside shown to a person: every character that could change what they read is
made visible.

A directory name, a tool's description or a tool's output may hold escape sequences (a terminal
would move the cursor, recolour or erase what came before), carriage returns and backspaces (a
line that overwrites itself), bidirectional overrides (text that reads in another order than it
is stored) or invisible characters. A person approving a grant, or reading a result, must see the
string as it is: such characters are shown as Python-style escapes (`\\x1b`, `\\r`, `\\u202e`).
"""

from __future__ import annotations

import unicodedata

# Control (Cc), format (Cf: bidi overrides, zero-width characters), line and paragraph
# separators, surrogates (a lone half of a pair) and unassigned code points.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Cn"})
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def visible(text: str, keep: str = "") -> str:
    """`text` with every control, format or invisible character (other than those in `keep`,
    say "\\n\\t" for multi-line output) written as an escape. A backslash is left as it is.

    When newlines are kept, so is the carriage return of a CRLF line end: on a terminal it only
    ends the line, as the newline would."""
    if text.isprintable():
        return text  # the usual case, at C speed
    if "\n" not in keep:
        return _escaped(text, keep)
    lines = text.split("\n")
    last = len(lines) - 1
    return "\n".join(_line(line, keep, ends_in_newline=index < last) for index, line in enumerate(lines))


def quoted(text: str) -> str:
    """`text` in single quotes, made visible, for a string from outside set inside a sentence (a
    path, a name): a quote or backslash in it is escaped too, so that nothing in it can close the
    quotes and go on as the sentence's own words."""
    return "'" + visible(text.replace("\\", "\\\\").replace("'", "\\'")) + "'"


def _line(line: str, keep: str, ends_in_newline: bool) -> str:
    if ends_in_newline and line.endswith("\r"):
        return _escaped(line[:-1], keep) + "\r"
    return _escaped(line, keep)


def _escaped(text: str, keep: str) -> str:
    if text.isprintable():
        return text  # most lines of multi-line output
    return "".join(char if char in keep or not _hidden(char) else _escape(char) for char in text)


def _hidden(char: str) -> bool:
    return unicodedata.category(char) in _HIDDEN_CATEGORIES


def _escape(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
