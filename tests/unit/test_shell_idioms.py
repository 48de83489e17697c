"""Shell command lines said in words for the router; sentences that only start like one left as
they are (services/agent/shell_idioms.py)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from llama_agent.services.agent import routing
from llama_agent.services.agent.shell_idioms import in_words

from tests.unit.test_prompting import SAY, SHOUT


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("cat notes/today.txt", "Show me the contents of the file notes/today.txt."),
        ("sudo less /var/log/app.log", "Show me the contents of the file /var/log/app.log."),
        ("head -n 5 data.csv", "Show me the first 5 lines of the file data.csv."),
        ("tail -20 server.log", "Show me the last 20 lines of the file server.log."),
        ("head -3 README", "Show me the first 3 lines of the file README."),
        ("sed -n '3,9p' app.py", "Show me lines 3 to 9 of the file app.py."),
        ("ls", "List the files in this folder."),
        ("ls -la src/lib", "List the files in the folder src/lib."),
        ("tree docs/", "List the files in the folder docs/."),
        ("find . -name '*.toml'", "List the files in this folder."),
        ("grep -rn FIXME lib/", "Search the files in lib/ for the text FIXME."),
        ("rg 'fn main'", "Search the files for the text fn main."),
        ("git grep -n load_user", "Search the files for the text load_user."),
        ("echo 'eggs' >> shopping.txt", "Add the line 'eggs' to the end of the file shopping.txt."),
        ('printf "a=1" > conf/a.env', 'Write "a=1" into the file conf/a.env.'),
        ("tee -a log.md <<< 'shipped'", "Add the line 'shipped' to the end of the file log.md."),
        ("expr 7 \\* 6", "Calculate 7 * 6."),
        ("bc <<< '3^4'", "Calculate '3^4'."),
        ("date", "What is the date and time now?"),
        ("TZ=America/Lima date", "What is the date and time in America/Lima now?"),
        ("touch empty.txt", "Create an empty file empty.txt."),
    ],
)
def test_a_command_line_is_said_in_words(line: str, words: str) -> None:
    assert in_words(line) == words


@pytest.mark.parametrize(
    "sentence",
    [
        "find where load_config is defined",  # "find" the English verb
        "Find the lines that mention taxes",
        "date night ideas?",
        "tree planting tips",
        "cat videos are the best",
        "more coffee please",
        "head of the department?",
        "head README",  # an everyday word before a plain one: not told from a sentence
        "echo hello there",  # no redirection: an echo
        "grep for TODO in src and print the matches",  # a sentence about grep
        "ls 'unclosed",  # not a command line shlex can read
        "What is in notes.txt?",
        "",
    ],
)
def test_a_sentence_is_left_as_it_is(sentence: str) -> None:
    assert in_words(sentence) == sentence


async def test_the_router_scores_the_words_and_splits_command_lines_at_and_and() -> None:
    asked: list[str] = []

    async def score(prefix: str, options: Sequence[str], continuation: str, context: str = "") -> list[float]:
        asked.append(continuation.strip())
        return [-1.0 if option.startswith("Tool: say") else -9.0 for option in options]

    route = await routing.route(score, [SAY, SHOUT], "cat a.txt && grep -r x src")
    assert route.steps == ("say", "say")
    assert list(dict.fromkeys(asked)) == [
        "Show me the contents of the file a.txt.",
        "Search the files in src for the text x.",
    ]
