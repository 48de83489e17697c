"""The router's options scored as sequences of one batch, with the real embedded model: the same
scores (up to the rounding of llama.cpp's CPU kernels, which depends on how many rows a batch
has) and the same routes as scoring one option at a time, and the prefix shared, not copied."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest
from llama_agent.runtime.models.backend import ModelSettings
from llama_agent.runtime.models.llama import LlamaModel
from llama_agent.runtime.models.scoring import SCORING_CONTEXT, PrefixScorer, ScoringContext
from llama_agent.runtime.tools.metadata import ParamType, ToolParam
from llama_agent.services.agent import routing
from llama_agent.services.tools.registry import Tool

from tests.unit.test_prompting import examples_of, make_tool

# llama.cpp's CPU kernels round a row differently by where it falls in a batch (blocks of 4 rows
# or the rest), and the quantised activations of the next layers amplify it: batched and one at a
# time each differ from a plain evaluation of the whole text by up to about 0.3 nats on a request's
# summed log-likelihood, and from each other by up to about 0.5. A scoring mistake (a row off by
# one, a sequence seeing another's cells) moves a score by several nats.
TOLERANCE = 1.0


Scorers = tuple[LlamaModel, PrefixScorer, PrefixScorer]


def _tool(name: str, *requests: str) -> Tool:
    return make_tool(
        name,
        ToolParam("value", "", ParamType.STRING, True),
        description=f"{name}s.",
        examples=examples_of(name, *requests),
    )


TOOLS = [
    _tool("calc", "What is 3 * 4?", "Compute 120 / 8.", "How much is 17 plus 25?"),
    _tool("echo", "Echo back 'hello'.", "Repeat after me: good night.", "Say back: ready."),
    _tool("print", "Print 'build started' to the console.", "Print the line done.", "Show 'ok' on screen."),
    _tool("read_file", "Read notes.txt.", "What is in todo.md?", "Show me the file config.toml."),
]
# Requests whose route is clear, beside a few that are close (the scores are compared for all).
CLEAR = ["What is 45 * 12?", "Echo back 'Something to echo'", "Print 'deploy complete'", "Read report.txt"]
OTHERS = ["Good morning!", "Who wrote Hamlet?", "Compute 7 plus 8, then print the result"]


@pytest.fixture(scope="module")
def scorers(default_model: Path) -> Scorers:
    """One model; a scorer with every option in one batch, and one with an option at a time."""
    model = LlamaModel.load(default_model, ModelSettings(context_size=1024))
    batched = PrefixScorer(ScoringContext(model._llm, SCORING_CONTEXT))
    one_at_a_time = PrefixScorer(ScoringContext(model._llm, SCORING_CONTEXT, sequences=2))
    return model, batched, one_at_a_time


def _score(model: LlamaModel, scorer: PrefixScorer) -> routing.Scorer:
    async def score(prefix: str, options: Sequence[str], continuation: str, context: str) -> list[float]:
        return scorer.log_likelihoods(
            model._tokenize(prefix),
            [model._plain_tokens(option) for option in options],
            model._plain_tokens(continuation),
            model._plain_tokens(context) if context else [],
        )

    return score


def _classify(model: LlamaModel, scorer: PrefixScorer) -> routing.Classifier:
    async def classify(prefix: str, context: str, candidates: Sequence[str]) -> list[float]:
        return scorer.candidate_likelihoods(
            model._tokenize(prefix),
            model._plain_tokens(context),
            [model._plain_tokens(candidate) for candidate in candidates],
        )

    return classify


def test_options_scored_in_one_batch_score_as_one_at_a_time(
    scorers: Scorers,
) -> None:
    model, batched, single = scorers
    prefix = routing.prefix(TOOLS)
    options = [routing.option(name) for name in ("calc", "echo", "none")]  # no pruning: all in full
    for request in CLEAR + OTHERS:
        text = routing.continuation(request)
        together = model_scores(model, batched, prefix, options, text)
        alone = model_scores(model, single, prefix, options, text)
        assert together == pytest.approx(alone, abs=TOLERANCE)
        assert all(math.isfinite(score) and score < 0 for score in together)


def model_scores(
    model: LlamaModel, scorer: PrefixScorer, prefix: str, options: list[str], text: str
) -> list[float]:
    return scorer.log_likelihoods(
        model._tokenize(prefix),
        [model._plain_tokens(option) for option in options],
        model._plain_tokens(text),
    )


async def test_routes_are_the_same_batched_or_one_option_at_a_time(
    scorers: Scorers,
) -> None:
    model, batched, single = scorers
    for request in CLEAR + OTHERS:
        # As the agent routes: the noisy channel and the direct question together.
        together = await routing.route(
            _score(model, batched), TOOLS, request, classify=_classify(model, batched)
        )
        alone = await routing.route(_score(model, single), TOOLS, request, classify=_classify(model, single))
        if request in CLEAR:
            assert together.steps == alone.steps
        finite = [name for name, score in together.scores.items() if math.isfinite(score)]
        for name in finite:
            if math.isfinite(alone.scores[name]):
                assert together.scores[name] == pytest.approx(alone.scores[name], abs=TOLERANCE)


def test_a_conversation_context_and_more_options_than_sequences(default_model: Path) -> None:
    """Options beyond the context's sequences are scored in further batches; a context after the
    prefix is seen by every sequence; the option sequences leave no cells behind."""
    import llama_cpp

    model = LlamaModel.load(default_model, ModelSettings(context_size=1024))
    window = ScoringContext(model._llm, SCORING_CONTEXT, sequences=3)  # two options a batch
    scorer = PrefixScorer(window)
    wide = PrefixScorer(ScoringContext(model._llm, SCORING_CONTEXT))
    prefix = model._tokenize(routing.prefix(TOOLS))
    context = model._plain_tokens("Tool: calc\nRequest: What is 2 + 2?\n")
    options = [model._plain_tokens(routing.option(name)) for name in ("calc", "echo", "print")]
    text = model._plain_tokens(routing.continuation("And 3 + 3?"))
    scores = scorer.log_likelihoods(prefix, options, text, context)
    assert scores == pytest.approx(wide.log_likelihoods(prefix, options, text, context), abs=TOLERANCE)
    assert scores != pytest.approx(wide.log_likelihoods(prefix, options, text), abs=1e-3)
    memory = window.memory
    held = len(prefix) + len(context)
    assert llama_cpp.llama_memory_seq_pos_max(memory, 0) == held - 1
    assert [llama_cpp.llama_memory_seq_pos_max(memory, seq) for seq in (1, 2)] == [-1, -1]


def test_candidates_score_as_continuations_of_the_context(scorers: Scorers) -> None:
    """The direct question (which tool, right after the request): each candidate's likelihood
    after prefix and context, up to its first token no other candidate shares, equals scoring
    that much of it as the continuation after the context's last token, one at a time; several
    candidates a batch or few. (Which tool is likeliest is the model's choice, measured by
    `python -m evals.routing`, not asserted: it may round apart on another CPU.)"""
    model, batched, single = scorers
    narrow = PrefixScorer(ScoringContext(model._llm, SCORING_CONTEXT, sequences=2))  # one a batch
    prefix = model._tokenize(routing.direct_prefix(TOOLS))
    names = ["calc", "echo", "print", "read_file", "read_url", "none"]
    candidates = [model._plain_tokens(f" {name}\n") for name in names]
    read_file, read_url = candidates[3], candidates[4]
    shared = next(i for i, (a, b) in enumerate(zip(read_file, read_url, strict=False)) if a != b)
    assert shared >= 1  # " read" at least: these two need further rows, the others one
    telling = [1, 1, 1, shared + 1, shared + 1, 1]
    for request in CLEAR:
        context = model._plain_tokens(f"Request: {request}\nTool:")
        together = batched.candidate_likelihoods(prefix, context, candidates)
        assert narrow.candidate_likelihoods(prefix, context, candidates) == pytest.approx(
            together, abs=TOLERANCE
        )
        alone = [
            single.log_likelihoods(prefix, [context[-1:]], candidate[:length], context[:-1])[0]
            for candidate, length in zip(candidates, telling, strict=True)
        ]
        assert together == pytest.approx(alone, abs=TOLERANCE)
    with pytest.raises(ValueError, match="context"):
        batched.candidate_likelihoods(prefix, [], candidates)
