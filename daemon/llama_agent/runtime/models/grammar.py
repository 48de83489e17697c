"""JSON Schema to GBNF, for constrained generation: llama-cpp-python's converter, made stricter.

The vendored converter (llama_cpp.llama_grammar) has three gaps that matter for tool calls:

* its strings admit raw control characters (U+0000-U+001F), which JSON forbids: a model could
  emit a raw newline inside a string and make the call unparseable. Here a string character is
  anything but `"`, `\\` and those, or an escape (`\\n`, `\\u0041`...);
* it ignores `minimum` and `maximum`: an integer may be any 16 digits. Here an integer with bounds
  (every integer parameter has them: at least the s64 range) admits exactly the numbers between
  them, in canonical form (no leading zeros, no `-0`);
* its literals (an enum's values, a const) leave `\\` unescaped, so a choice with a backslash
  or a quote broke the grammar. Here they are escaped, and non-ASCII text is written as itself.

Number (f64) bounds are not in the grammar; the arguments are validated against them anyway.
Imports llama_cpp: import this module only once a model is needed.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from llama_cpp.llama_grammar import RESERVED_NAMES, BuiltinRule, SchemaConverter

# One character inside a JSON string: printable (not `"`, `\`, or U+0000-U+001F), or an escape.
STRING_CHAR = BuiltinRule(
    r'[^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])', []
)

_LITERAL_SPECIALS = re.compile(r'[\\"\r\n]')
_LITERAL_ESCAPES = {"\\": "\\\\", '"': '\\"', "\r": "\\r", "\n": "\\n"}


class _Converter(SchemaConverter):
    def _format_literal(self, literal: str) -> str:
        # The vendored version leaves backslashes alone: `a\\b` in an enum would end the literal.
        return '"' + _LITERAL_SPECIALS.sub(lambda match: _LITERAL_ESCAPES[match.group(0)], literal) + '"'

    def _generate_constant_rule(self, value: Any) -> str:
        # Non-ASCII text as itself, not as \uXXXX escapes, which a small model rarely writes.
        return self._format_literal(json.dumps(value, ensure_ascii=False))

    def visit(self, schema: dict[str, Any], name: str) -> str:
        bounds = _integer_bounds(schema)
        if bounds is None:
            return str(super().visit(schema, name))  # type: ignore[no-untyped-call]
        rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
        alternatives = " | ".join(integer_range_alternatives(*bounds))
        return str(self._add_rule(rule_name, f"({alternatives}) space"))  # type: ignore[no-untyped-call]

    def _add_primitive(self, name: str, rule: BuiltinRule) -> str:
        chosen = STRING_CHAR if name == "char" else rule
        return str(super()._add_primitive(name, chosen))


def json_schema_to_gbnf(schema_json: str) -> str:
    """GBNF (root rule `root`) for the JSON values the schema admits; object keys keep their order."""
    converter = _Converter(  # type: ignore[no-untyped-call]
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
    )
    resolved = converter.resolve_refs(json.loads(schema_json), "input")
    converter.visit(resolved, "")
    return str(converter.format_grammar())  # type: ignore[no-untyped-call]


def _integer_bounds(schema: dict[str, Any]) -> tuple[int, int] | None:
    """The whole numbers an integer schema bounds on both sides, unless something else decides
    (an enum, a const, a union) or no whole number is in range; None lets the converter decide."""
    if schema.get("type") != "integer" or {"enum", "const", "$ref", "oneOf", "anyOf"} & schema.keys():
        return None
    low, high = schema.get("minimum"), schema.get("maximum")
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return None
    if not math.isfinite(low) or not math.isfinite(high):
        return None
    whole_low, whole_high = math.ceil(low), math.floor(high)
    return (whole_low, whole_high) if whole_low <= whole_high else None


def integer_range_alternatives(low: int, high: int) -> list[str]:
    """GBNF alternatives that together match exactly the decimal integers from `low` to `high`.

    Written as a trie: numbers that share leading characters share their alternative, so the
    grammar engine follows a few stacks at each character rather than one per pattern (a full
    vocabulary check at the start of an s64 costs as much as with the vendored rule).
    """
    if low > high:
        raise ValueError(f"empty integer range {low}..{high}")
    alternatives: list[str] = []
    if low < 0:
        alternatives.append('"-" ' + _group(" | ".join(_positive_range(max(1, -high), -low))))
    if low <= 0 <= high:
        alternatives.append('"0"')
    if high > 0:
        alternatives += _positive_range(max(1, low), high)
    return alternatives


def _positive_range(low: int, high: int) -> list[str]:
    """Alternatives for low..high (1 <= low <= high), one per digit count, except that digit counts
    whose every number is in range share one: `[1-9]` and then optional digits."""
    alternatives: list[str] = []
    full: list[int] = []  # consecutive digit counts wholly inside the range
    for digits in range(len(str(low)), len(str(high)) + 1):
        first, last = 10 ** (digits - 1), 10**digits - 1
        start, end = max(low, first), min(high, last)
        if (start, end) == (first, last):
            full.append(digits)
            continue
        if full:
            alternatives.append(_any_digits(full[0], full[-1]))
            full = []
        alternatives.append(_same_length(str(start), str(end)))
    if full:
        alternatives.append(_any_digits(full[0], full[-1]))
    return alternatives


def _any_digits(shortest: int, longest: int) -> str:
    """Numbers of `shortest` to `longest` digits, no leading zero; the optional digits nest, so the
    grammar engine follows one stack per digit rather than one per length."""
    optional = ""
    for _ in range(longest - shortest):
        optional = f"([0-9] {optional})?" if optional else "([0-9])?"
    return _sequence("[1-9]", *["[0-9]"] * (shortest - 1), optional)


def _same_length(low: str, high: str) -> str:
    """The numbers from `low` to `high`, both written with the same number of digits."""
    if not low:
        return ""
    if low[0] == high[0]:
        return _sequence(f'"{low[0]}"', _group(_same_length(low[1:], high[1:])))
    width = len(low) - 1
    head_low, head_high = int(low[0]), int(high[0])
    # The lowest head digit with a partial tail, the middle ones with any tail, the highest partial.
    alternatives: list[str] = []
    if low[1:] != "0" * width:
        alternatives.append(_sequence(f'"{head_low}"', _group(_same_length(low[1:], "9" * width))))
        head_low += 1
    top = ""
    if high[1:] != "9" * width:
        top = _sequence(f'"{head_high}"', _group(_same_length("0" * width, high[1:])))
        head_high -= 1
    if head_low <= head_high:
        digit = f'"{head_low}"' if head_low == head_high else f"[{head_low}-{head_high}]"
        alternatives.append(_sequence(digit, *["[0-9]"] * width))
    return " | ".join([*alternatives, top] if top else alternatives)


def _sequence(*items: str) -> str:
    return " ".join(item for item in items if item)


def _group(rule: str) -> str:
    return f"({rule})" if "|" in rule else rule
