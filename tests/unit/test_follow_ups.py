"""Arithmetic follow-ups said in full (services/agent/follow_ups.py)."""

from __future__ import annotations

import pytest
from llama_agent.services.agent.follow_ups import said_in_full
from llama_agent.services.agent.history import AgentStep, PastTurn


def _after(result: str, is_error: bool = False) -> list[PastTurn]:
    step = AgentStep("calc", {"expression": "12*7"}, result, is_error)
    return [PastTurn("what's 12*7", (step,), f"12*7 is {result}.", "answered")]


@pytest.mark.parametrize(
    ("follow_up", "in_full"),
    [
        ("and divided by 4?", "What is 84 / 4?"),
        ("Divide that by 4", "What is 84 / 4?"),
        ("times 3", "What is 84 * 3?"),
        ("what's that multiplied by 2.5?", "What is 84 * 2.5?"),
        ("now add 16 to it", "What is 84 + 16?"),
        ("and minus 4", "What is 84 - 4?"),
        ("subtract 4 from the result", "What is 84 - 4?"),
        ("take 15% off that", "What is 84 * (100 - 15) / 100?"),
        ("what is 50 percent of that?", "What is 84 * 50 / 100?"),
        ("And the square root of that?", "What is sqrt(84)?"),
        ("ok, that squared", "What is 84 ^ 2?"),
        ("half of it", "What is 84 / 2?"),
        ("double that please", "What is 84 * 2?"),
    ],
)
def test_an_arithmetic_follow_up_gets_the_last_result_put_in(follow_up: str, in_full: str) -> None:
    assert said_in_full(follow_up, _after("84")) == in_full


@pytest.mark.parametrize(
    "request_text",
    [
        "what's 12 divided by 4?",  # says its own numbers
        "divided by 4, and then list the src folder",  # goes on about something else
        "What time is it?",
        "times have changed",
    ],
)
def test_other_requests_are_left_as_they_were(request_text: str) -> None:
    assert said_in_full(request_text, _after("84")) == request_text


def test_only_a_bare_number_that_was_a_result_is_gone_on_from() -> None:
    assert said_in_full("and divided by 4?", []) == "and divided by 4?"
    assert said_in_full("and divided by 4?", _after("84", is_error=True)) == "and divided by 4?"
    assert said_in_full("and divided by 4?", _after("Lisbon has 545923 people")) == "and divided by 4?"
    no_call = [PastTurn("hi", (), "Hello!", "answered")]
    assert said_in_full("and divided by 4?", no_call) == "and divided by 4?"
