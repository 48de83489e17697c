"""`llama-agent run` on a terminal: the model's words and the tools' results are outside text."""

from __future__ import annotations

import io
import unicodedata

from llama_agent.cli.console import ConsoleEvents
from llama_agent.runtime.models.backend import ModelIdentity
from llama_agent.services.agent.history import AgentStep
from llama_agent.services.agent.loop import AgentResult

HIDDEN_CATEGORIES = ("Cc", "Cf", "Zl", "Zp", "Cs", "Cn")


def hidden_characters(text: str) -> list[str]:
    """What would act on the terminal: a CRLF line end only ends the line."""
    shown = text.replace("\r\n", "\n")
    return [char for char in shown if char not in "\n\t" and unicodedata.category(char) in HIDDEN_CATEGORIES]


def test_a_run_shows_outside_text_with_lines_kept_and_escapes_visible() -> None:
    out, progress = io.StringIO(), io.StringIO()
    events = ConsoleEvents(out, progress)
    events.on_turn_start(0)
    events.on_text("thinking\x1b[2K\r")
    events.on_text("\tabout it\u202e\n")
    step = AgentStep("echo", {"value": "\x1b]0;owned\x07"}, "line 1\n\x1b[31mline 2\n", is_error=False)
    events.on_tool_call(0, step.tool, step.arguments)
    events.on_tool_result(0, step)
    model = ModelIdentity("openai", "model\x1b[8m", "http://127.0.0.1:1/v1")
    events.finish(AgentResult("the answer\r\n\x1b[2Jis 42", steps=[step], model=model))

    assert (hidden_characters(out.getvalue()), hidden_characters(progress.getvalue())) == ([], [])
    assert progress.getvalue().startswith("thinking\\x1b[2K\\r\tabout it\\u202e\n")
    assert "model: model\\x1b[8m (openai at http://127.0.0.1:1/v1)" in progress.getvalue()
    assert out.getvalue() == (
        '→ echo {"value": "\\u001b]0;owned\\u0007"}\n'  # JSON's own escapes
        "← line 1\n\\x1b[31mline 2\n"
        "Answer: the answer\r\n\\x1b[2Jis 42\n"
    )


def test_an_override_in_a_calls_arguments_is_made_visible() -> None:
    """JSON leaves characters that are not ASCII as they are (ensure_ascii=False): a bidi
    override in an argument would reorder the line."""
    out = io.StringIO()
    ConsoleEvents(out, io.StringIO()).on_tool_call(0, "echo", {"value": "abc\u202edef"})
    assert out.getvalue() == '→ echo {"value": "abc\\u202edef"}\n'
