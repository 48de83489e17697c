"""The turn grammar: integers held to their bounds, strings without raw control characters.

Three levels: the integer-range patterns against Python's `re` (exhaustively and with hypothesis),
whole grammars against llama.cpp's own grammar engine (the embedded model's vocabulary only, one
character per token), and one real generation that a prompt pushes out of bounds.
"""

from __future__ import annotations

import ctypes
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from llama_agent.runtime.models.backend import Turn
from llama_agent.runtime.models.grammar import integer_range_alternatives, json_schema_to_gbnf
from llama_agent.runtime.models.llama import LlamaModel
from llama_agent.runtime.tools.metadata import ParamType, ToolMetadata, ToolParam
from llama_agent.runtime.tools.schema import S64_MAX, S64_MIN, input_schema

NOT_CANONICAL = ["-0", "00", "01", "-01", "+1", "", "1.0", "1e2"]


def range_regex(low: int, high: int) -> re.Pattern[str]:
    """The alternatives as a Python regex: their literals hold only digits and '-', so dropping
    the quotes and spaces leaves the same language."""
    alternatives = (a.replace('"', "").replace(" ", "") for a in integer_range_alternatives(low, high))
    return re.compile("(?:" + "|".join(alternatives) + ")")


@pytest.mark.parametrize(
    ("low", "high"),
    [(1, 100), (0, 0), (-5, 5), (-120, -7), (7, 7), (10, 99), (1, 9), (0, 1000), (-1000, -1), (99, 101)],
)
def test_an_integer_range_admits_exactly_its_numbers(low: int, high: int) -> None:
    pattern = range_regex(low, high)
    for number in range(-1200, 1201):
        assert bool(pattern.fullmatch(str(number))) == (low <= number <= high), number
    for text in NOT_CANONICAL:
        assert not pattern.fullmatch(text), text


@given(
    st.integers(S64_MIN, S64_MAX),
    st.integers(S64_MIN, S64_MAX),
    st.lists(st.integers(S64_MIN - 10, S64_MAX + 10), max_size=20),
)
def test_any_s64_range_admits_exactly_its_numbers(a: int, b: int, samples: list[int]) -> None:
    low, high = min(a, b), max(a, b)
    pattern = range_regex(low, high)
    for number in [*samples, low, high, low - 1, high + 1, 0, -1, 1]:
        assert bool(pattern.fullmatch(str(number))) == (low <= number <= high), number


def test_the_s64_range_is_a_trie() -> None:
    """Negative numbers, zero, up to 18 digits, 19 digits: numbers that share leading characters
    share an alternative, so the grammar engine follows a few stacks, not one per pattern."""
    alternatives = integer_range_alternatives(S64_MIN, S64_MAX)
    assert len(alternatives) == 4
    assert alternatives[0].startswith('"-" (') and alternatives[1] == '"0"'


# -- whole grammars, through llama.cpp's grammar engine ---------------------------------------


class Vocabulary:
    """The embedded model's tokenizer, enough for llama.cpp to run a grammar over text."""

    def __init__(self, model: Path) -> None:
        self.llm = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)

    def token(self, char: str) -> int:
        tokens: list[int] = self.llm.tokenize(char.encode(), add_bos=False, special=False)
        assert len(tokens) == 1, f"{char!r} is not one token"
        return tokens[0]

    def accepts(self, grammar: str, text: str) -> bool:
        """Whether the grammar admits `text`, fed one character (= one token) at a time, then the end."""
        sampler = llama_cpp.llama_sampler_init_grammar(self.llm._model.vocab, grammar.encode(), b"root")
        assert sampler, "llama.cpp rejected the grammar"
        try:
            return all(self._allowed(sampler, token) for token in self._tokens(text))
        finally:
            llama_cpp.llama_sampler_free(sampler)

    def _tokens(self, text: str) -> Iterator[int]:
        yield from (self.token(char) for char in text)
        yield self.llm.token_eos()

    def _allowed(self, sampler: Any, token: int) -> bool:
        candidate = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
        array = llama_cpp.llama_token_data_array(data=candidate, size=1, selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
        if candidate[0].logit == float("-inf"):
            return False
        if token != self.llm.token_eos():
            llama_cpp.llama_sampler_accept(sampler, token)
        return True


@pytest.fixture(scope="module")
def vocabulary(default_model: Path) -> Vocabulary:
    return Vocabulary(default_model)


TOOL = ToolMetadata(
    "sample",
    "",
    "1",
    (
        ToolParam("count", "", ParamType.INTEGER, True, minimum=1, maximum=100),
        ToolParam("offset", "", ParamType.INTEGER, False),
        ToolParam("mode", "", ParamType.STRING, False, choices=('say "hi"', "back\\slash", "ünï")),
        ToolParam("text", "", ParamType.STRING, False),
    ),
)
GRAMMAR = json_schema_to_gbnf(json.dumps(input_schema(TOOL)))


@pytest.mark.parametrize(
    ("arguments", "admitted"),
    [
        ('{"count": 1}', True),
        ('{"count": 100}', True),
        ('{"count": 0}', False),
        ('{"count": 101}', False),
        ('{"count": 007}', False),
        ('{"count": -5}', False),
        ('{"count": 5, "offset": -9223372036854775808}', True),
        ('{"count": 5, "offset": 9223372036854775807}', True),
        ('{"count": 5, "offset": 9223372036854775808}', False),
        ('{"count": 5, "offset": 12345678901234567890}', False),
    ],
)
def test_integers_are_held_to_their_bounds(vocabulary: Vocabulary, arguments: str, admitted: bool) -> None:
    assert vocabulary.accepts(GRAMMAR, arguments) is admitted


@pytest.mark.parametrize(
    ("mode", "admitted"),
    [
        (r'"say \"hi\""', True),
        (r'"back\\slash"', True),
        ('"ünï"', True),
        ('"say"', False),
        ('"backslash"', False),
        ('"unicode"', False),
    ],
)
def test_choices_admit_exactly_their_values(vocabulary: Vocabulary, mode: str, admitted: bool) -> None:
    assert vocabulary.accepts(GRAMMAR, f'{{"count": 2, "mode": {mode}}}') is admitted


@pytest.mark.parametrize(
    ("text", "admitted"),
    [
        (r'"two\nlines, a \"quote\", a tab\t, \u00e9"', True),
        ('"two\nlines"', False),
        ('"a\ttab"', False),
        ('"unit\x1fseparator"', False),
        (r'"bad \x escape"', False),
    ],
)
def test_strings_admit_escapes_but_no_raw_control_characters(
    vocabulary: Vocabulary, text: str, admitted: bool
) -> None:
    assert vocabulary.accepts(GRAMMAR, f'{{"count": 2, "text": {text}}}') is admitted


# -- the real model -------------------------------------------------------------------------------


def test_a_generated_argument_stays_within_its_bounds(model: LlamaModel) -> None:
    """The prompt asks for a number far out of range and shows a raw newline in a string (the
    vendored converter lets this model write both); whatever the model prefers, the grammar holds."""
    metadata = ToolMetadata(
        "pick",
        "",
        "1",
        (
            ToolParam("count", "", ParamType.INTEGER, True, minimum=3, maximum=7),
            ToolParam("note", "", ParamType.STRING, True),
        ),
    )
    schema = input_schema(metadata)
    # At most 20 characters (each at most a 6-character escape): the turn must end within 300 tokens.
    schema["properties"]["note"]["maxLength"] = 20
    prompt = (
        "Reply with JSON.\n\n"
        'User: set count to 123456 and note to two lines: "first" then "second"\n'
        'Assistant: {"count": 123456, "note": "first\nsecond"}\n\n'
        "User: set count to 99999 and note to two lines: first then second\n"
        "Assistant: "
    )
    turn = model.generate(Turn(prompt, schema, max_tokens=300, temperature=0.0, seed=1))
    assert turn.stop_reason == "stop", turn.text
    arguments = json.loads(turn.text)  # strict: a raw control character in a string would fail here
    assert 3 <= arguments["count"] <= 7
    assert isinstance(arguments["note"], str)
