"""The eval's conversations: their file, their scoring and report (pure code), and the runner's
turns against the real daemon with a scripted model."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from llama_agent.config import REPO_ROOT

from evals.conversations import (
    Conversation,
    check_conversations,
    load_conversations,
    parse_conversations,
    select_conversations,
)
from evals.daemon import Settings, prepare_tools
from evals.dialogues import run_conversation
from evals.report import ConversationResults, conversation_section
from evals.run import Run, rescore, select_suite, write_outputs
from evals.scoring import (
    ConversationRecord,
    RunRecord,
    Step,
    TurnRecord,
    score_conversation,
    summarize_conversations,
)
from evals.tasks import TaskError, load_tasks
from tests.scripted_model import answer, call, recorded

EVAL_WORKSPACE = REPO_ROOT / "evals" / "workspace"


def calc_turn(prompt: str, regex: str, answer_text: str, **fields: Any) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "kind": "single",
        "tools": ["calc"],
        "args": [{"field": "expression", "regex": regex}],
        "answer_contains": [answer_text],
        **fields,
    }


def conversation(*turns: dict[str, Any], id: str = "c", split: str = "tuning") -> dict[str, Any]:
    return {"id": id, "split": split, "turn": list(turns)}


MULTIPLY = calc_turn("what's 12*7", r"12\s*\*\s*7", "84")
DIVIDE = calc_turn("and divided by 4?", r"84\s*/\s*4", "21")
CANCELLED = {"prompt": "list the config folder", "cancel": True}
RESEND = calc_turn("list the config folder\nno, what's 84/4", r"84\s*/\s*4", "21", forbid_tools=["list_dir"])


def parse(*entries: dict[str, Any]) -> list[Conversation]:
    return parse_conversations({"conversation": list(entries)}, "conversations.toml")


# -- the file -----------------------------------------------------------------------------------


def test_the_conversations_load_and_keep_their_coverage() -> None:
    conversations = load_conversations()
    check_conversations(conversations)
    assert all(2 <= len(c.turns) <= 4 for c in conversations)
    assert sum(c.split == "heldout" for c in conversations) * 4 >= len(conversations)
    resent = [c for c in conversations if any(turn.resends_cancelled for turn in c.turns)]
    assert resent
    for c in resent:
        index = next(i for i, turn in enumerate(c.turns) if turn.resends_cancelled)
        expected = c.turns[index].expected
        assert expected is not None and expected.forbid_tools, c.id  # the old request is not redone
    task_ids = {task.id for task in load_tasks()}
    assert not task_ids & {c.id for c in conversations}


def test_turns_are_tasks_named_after_their_conversation() -> None:
    (parsed,) = parse(conversation(MULTIPLY, CANCELLED, RESEND, split="heldout"))
    first, cancelled, resend = parsed.turns
    assert first.expected is not None and resend.expected is not None
    assert (first.expected.id, resend.expected.id) == ("c/1", "c/3")
    assert (first.expected.split, first.expected.tools, resend.expected.forbid_tools) == (
        "heldout",
        ("calc",),
        ("list_dir",),
    )
    assert (cancelled.cancel, cancelled.expected, first.cancel) == (True, None, False)
    assert (first.resends_cancelled, resend.resends_cancelled) == (False, True)
    (not_resent,) = parse(conversation(MULTIPLY, CANCELLED, DIVIDE))
    assert not not_resent.turns[2].resends_cancelled


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        (conversation(MULTIPLY, {**DIVIDE, "kind": "sometimes"}), "turn 2: unknown kind"),
        (
            conversation(MULTIPLY, {k: v for k, v in DIVIDE.items() if k != "tools"}),
            "turn 2: missing 'tools'",
        ),
        (
            conversation(MULTIPLY, {**DIVIDE, "args": []}),
            "turn 2: expected call 1 (calc) has no argument rule",
        ),
        (conversation(MULTIPLY, {**DIVIDE, "colour": 1}), "turn 2: unknown key 'colour'"),
        (
            conversation({**CANCELLED, "tools": ["list_dir"]}, DIVIDE),
            "turn 1: a cancelled turn is not scored",
        ),
        (conversation({**CANCELLED, "cancel": "yes"}, DIVIDE), "turn 1: 'cancel' must be true or false"),
        (conversation(MULTIPLY, CANCELLED), "turn 2: the last turn cannot be cancelled"),
        (conversation(MULTIPLY), "1 turns; a conversation has 2 to 4"),
        (conversation(MULTIPLY, DIVIDE, DIVIDE, DIVIDE, DIVIDE), "5 turns"),
        (conversation(MULTIPLY, DIVIDE, split="later"), "unknown split 'later'"),
        (conversation(MULTIPLY, {**DIVIDE, "prompt": ""}), "turn 2: 'prompt' must be a non-empty string"),
    ],
)
def test_bad_conversations_are_refused_naming_the_conversation_and_turn(
    entry: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(TaskError) as raised:
        parse(entry)
    assert "conversations.toml: conversation 'c'" in str(raised.value)
    assert fragment in str(raised.value)


def test_conversation_ids_are_unique() -> None:
    with pytest.raises(TaskError, match="conversation id 'c' is used more than once"):
        parse(conversation(MULTIPLY, DIVIDE), conversation(MULTIPLY, DIVIDE))


def test_check_conversations_keeps_their_coverage() -> None:
    few = parse(conversation(MULTIPLY, DIVIDE))
    with pytest.raises(TaskError) as raised:
        check_conversations(few)
    for problem in (
        "1 conversations, fewer than 12",
        "0 conversations with a cancelled turn, fewer than 3",
        "0 conversations resend a cancelled message with the next, fewer than 1",
        "0 heldout conversations, fewer than 4",
    ):
        assert problem in str(raised.value)


def test_conversations_are_selected_by_id_and_split() -> None:
    conversations = load_conversations()
    heldout = select_conversations(conversations, splits=["heldout"])
    assert heldout and {c.split for c in heldout} == {"heldout"}
    assert [c.id for c in select_conversations(conversations, only=[conversations[1].id])] == [
        conversations[1].id
    ]
    with pytest.raises(TaskError, match="no conversation with id 'nope'"):
        select_conversations(conversations, only=["nope"])


def test_what_runs_follows_the_options() -> None:
    tasks, conversations = load_tasks(), load_conversations()
    everything = select_suite(tasks, conversations)
    assert (len(everything[0]), len(everything[1])) == (len(tasks), len(conversations))
    some_task, some_conversation = tasks[0].id, conversations[0].id
    assert select_suite(tasks, conversations, only=[some_conversation]) == ([], [conversations[0]])
    assert select_suite(tasks, conversations, only=[some_task]) == ([tasks[0]], [])
    both = select_suite(tasks, conversations, only=[some_task, some_conversation])
    assert both == ([tasks[0]], [conversations[0]])
    no_tool, none = select_suite(tasks, conversations, kinds=["no_tool"])
    assert none == [] and {t.kind for t in no_tool} == {"no_tool"}
    assert select_suite(tasks, conversations, with_conversations=False)[1] == []
    assert select_suite(tasks, conversations, with_tasks=False) == ([], conversations)
    heldout = select_suite(tasks, conversations, splits=["heldout"])
    assert {t.split for t in heldout[0]} == {c.split for c in heldout[1]} == {"heldout"}
    with pytest.raises(TaskError, match="no task or conversation with id 'nope'"):
        select_suite(tasks, conversations, only=["nope"])


# -- scoring ------------------------------------------------------------------------------------


def run(
    record_id: str, *steps: Step, text: str = "", prompt: int = 0, cached: int = 0, **extra: Any
) -> RunRecord:
    return RunRecord(
        record_id, tuple(steps), text, "answer", prompt_tokens=prompt, cached_prompt_tokens=cached, **extra
    )


def calc(expression: str) -> Step:
    return Step("calc", {"expression": expression}, False, "")


def test_a_conversation_succeeds_when_every_scored_turn_does_and_the_cancellation_took() -> None:
    (parsed,) = parse(conversation(MULTIPLY, CANCELLED, RESEND))
    good = ConversationRecord(
        "c",
        (
            TurnRecord(run("c/1", calc("12*7"), text="84", prompt=500)),
            TurnRecord(RunRecord("c/2", stop_reason="cancelled"), cancelled=True, cancel_took=True),
            TurnRecord(run("c/3", calc("84/4"), text="It is 21.", prompt=800, cached=600)),
        ),
    )
    score = score_conversation(parsed, good)
    assert score.success
    assert [turn.success for turn in score.turns] == [True, True, True]
    assert score.turns[1].score is None and score.turns[1].cancel_took
    # The cancelled request answered again: its tool called after the new one's.
    again = Step("list_dir", {"path": "config"}, False, "settings.ini")
    redone = ConversationRecord(
        "c",
        (good.turns[0], good.turns[1], TurnRecord(run("c/3", calc("84/4"), again, text="21", prompt=800))),
    )
    redone_score = score_conversation(parsed, redone)
    assert [turn.success for turn in redone_score.turns] == [True, True, False]
    assert not redone_score.success
    assert redone_score.turns[2].score is not None
    assert "called list_dir, which this request must not call" in redone_score.turns[2].score.reasons
    not_cancelled = ConversationRecord(
        "c", (good.turns[0], TurnRecord(run("c/2"), cancelled=True), good.turns[2])
    )
    assert [t.success for t in score_conversation(parsed, not_cancelled).turns] == [True, False, True]


def test_follow_up_reuse_counts_turns_after_the_first_that_ran_and_were_not_cancelled() -> None:
    (parsed,) = parse(conversation(MULTIPLY, CANCELLED, RESEND, DIVIDE))
    record = ConversationRecord(
        "c",
        (
            TurnRecord(run("c/1", calc("12*7"), text="84", prompt=500, cached=100)),  # the first: not counted
            TurnRecord(run("c/2", prompt=900, cached=900), cancelled=True, cancel_took=True),  # cancelled
            TurnRecord(run("c/3", calc("84/4"), text="21", prompt=800, cached=600)),
            TurnRecord(run("c/4", prompt=700, cached=700, error="agent/run timed out")),  # failed
        ),
    )
    score = score_conversation(parsed, record)
    assert (score.follow_up_cached_tokens, score.follow_up_prompt_tokens, score.reuse) == (600, 800, 0.75)
    unrun = (TurnRecord(run("c/3", error="x")), TurnRecord(run("c/4", error="x")))
    nothing_followed = ConversationRecord("c", (*record.turns[:2], *unrun))
    assert score_conversation(parsed, nothing_followed).reuse is None


def test_the_conversations_summary_adds_up_and_is_reported() -> None:
    first, second = parse(
        conversation(MULTIPLY, DIVIDE, id="a"),
        conversation(MULTIPLY, CANCELLED, RESEND, id="b", split="heldout"),
    )
    records = [
        ConversationRecord(
            "a",
            (
                TurnRecord(run("a/1", calc("12*7"), text="84", prompt=400)),
                TurnRecord(run("a/2", calc("84/4"), text="21", prompt=600, cached=300)),
            ),
        ),
        ConversationRecord(
            "b",
            (
                TurnRecord(run("b/1", calc("12*7"), text="84", prompt=400)),
                TurnRecord(run("b/2"), cancelled=True, cancel_took=True, outcome="cancelled"),
                TurnRecord(run("b/3", calc("84/5"), text="16.8", prompt=400, cached=300, seconds=2.5)),
            ),
        ),
    ]
    scores = [score_conversation(c, r) for c, r in zip([first, second], records, strict=True)]
    summary = summarize_conversations([first, second], scores)
    assert (summary.success.passed, summary.success.total) == (1, 2)
    assert {name: (r.passed, r.total) for name, r in summary.per_split.items()} == {
        "tuning": (1, 1),
        "heldout": (0, 1),
    }
    assert (summary.turns.passed, summary.turns.total) == (3, 4)
    assert (summary.turns_per_split["heldout"].passed, summary.turns_per_split["heldout"].total) == (1, 2)
    assert (summary.cancellations.passed, summary.cancellations.total) == (1, 1)
    assert (summary.resends.passed, summary.resends.total) == (0, 1)
    assert (summary.follow_up_cached_tokens, summary.follow_up_prompt_tokens) == (600, 1000)
    assert summary.reuse == 0.6
    lines = conversation_section(ConversationResults([first, second], records, scores, summary))
    text = "\n".join(lines)
    assert "| follow-up prompt reuse (cached / prompt tokens) | 600 / 1000 (60%) |" in text
    assert "| whole conversations succeeded | 1/2 (50%) |" in text
    assert "| a | tuning | 2 | yes | ✓ ✓ | 50% |" in text
    assert "| b | heldout | 3 | no | ✓ ⊘ ✗ | 75% | 2.5 |" in text
    assert '| b/3 | calc(expression="84/5") | argument rule failed' in text


def test_results_json_keeps_the_conversations_so_they_can_be_scored_again(tmp_path: Path) -> None:
    tasks, conversations = load_tasks()[:1], parse(conversation(MULTIPLY, CANCELLED, RESEND))
    turns = (
        TurnRecord(run("c/1", calc("12*7"), text="84", prompt=400)),
        TurnRecord(
            RunRecord("c/2", stop_reason="cancelled"), cancelled=True, cancel_took=True, outcome="cancelled"
        ),
        TurnRecord(run("c/3", calc("84/4"), text="21", prompt=500, cached=450)),
    )
    original = Run(
        {"date": "d"},
        tasks,
        [RunRecord(tasks[0].id, answer="x")],
        conversations,
        [ConversationRecord("c", turns, "s-1", 1.5)],
    )
    out, json_out = tmp_path / "R.md", tmp_path / "r.json"
    _, conversation_scores = write_outputs(original, out, json_out)
    assert conversation_scores[0].success
    document = json.loads(json_out.read_text())
    assert document["conversationSummary"]["followUpReuse"] == {
        "cachedPromptTokens": 450,
        "promptTokens": 500,
        "ratio": 0.9,
    }
    assert document["conversations"][0]["turns"][1]["cancelTook"] is True
    assert document["splits"]["tuning"]["success"]["total"] == 1
    assert "## Conversations" in out.read_text()
    again = rescore(json_out, tasks, conversations)
    assert again.conversation_records == original.conversation_records
    assert again.records == original.records


# -- the runner, against the daemon with a scripted model ---------------------------------------


def scripted_settings(tmp_path: Path, cache_dir: Path, *turns: str, delay: float = 0.0) -> Settings:
    script = tmp_path / "script.json"
    log = tmp_path / "model-requests.jsonl"
    script.write_text(
        json.dumps({"turns": list(turns), "pieceSize": 4, "pieceDelay": delay, "log": str(log)})
    )
    return Settings(
        cache_dir=cache_dir,
        command=(sys.executable, "-m", "tests.scripted_daemon", str(script)),
        env={"PYTHONPATH": str(REPO_ROOT)},
    )


async def test_a_conversation_runs_its_turns_in_one_session(
    tmp_path: Path, bundled_tools: Path, cache_dir: Path
) -> None:
    (parsed,) = parse(conversation(MULTIPLY, DIVIDE))
    settings = scripted_settings(
        tmp_path,
        cache_dir,
        call("calc", expression="12*7"),
        answer("12*7 is 84."),
        call("calc", expression="84/4"),
        answer("That makes 21."),
    )
    tools = prepare_tools(bundled_tools, tmp_path / "tools")
    record, model = await run_conversation(parsed, settings, tools, _workspace(tmp_path))
    assert model.endswith("scripted.gguf")
    assert record.session_id
    first, second = record.turns
    assert [step.arguments for step in first.run.steps] == [{"expression": "12*7"}]
    assert [step.result for step in second.run.steps] == ["21"]
    assert (second.run.answer, second.outcome, first.outcome) == ("That makes 21.", "answered", "answered")
    score = score_conversation(parsed, record)
    assert score.success
    assert score.follow_up_prompt_tokens == second.run.prompt_tokens > 0
    # The second run saw the first: the same session.
    prompts = [request["prompt"] for request in recorded(tmp_path / "model-requests.jsonl")]
    assert "12*7 is 84." not in prompts[1] and "12*7 is 84." in prompts[2]


async def test_a_cancelled_turn_is_cancelled_then_the_next_is_sent(
    tmp_path: Path, bundled_tools: Path, cache_dir: Path
) -> None:
    (parsed,) = parse(conversation(MULTIPLY, CANCELLED, DIVIDE))
    settings = scripted_settings(
        tmp_path,
        cache_dir,
        call("calc", expression="12*7"),
        answer("84."),
        json.dumps({"answer": "word " * 3000}),  # streams for about 8 s, unless cancelled
        call("calc", expression="84/4"),
        answer("21."),
        delay=0.01,
    )
    tools = prepare_tools(bundled_tools, tmp_path / "tools")
    record, _ = await run_conversation(parsed, settings, tools, _workspace(tmp_path))
    first, cancelled, last = record.turns
    assert (first.run.answer, first.outcome) == ("84.", "answered")
    assert (cancelled.cancelled, cancelled.cancel_took, cancelled.outcome) == (True, True, "cancelled")
    assert cancelled.run.seconds < 5
    assert (last.run.answer, [step.result for step in last.run.steps]) == ("21.", ["21"])
    assert score_conversation(parsed, record).success


def _workspace(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EVAL_WORKSPACE, tmp_path / "workspace"))
