"""With many tools, offer the model only those relevant to the prompt.

Every offered tool costs prompt tokens (its description, parameters and a worked example) and a
branch of the grammar, and a small model picks worse among many. Past `MAX_OFFERED` tools the
prompt is matched against each tool's text with BM25 (bm25s), and the best `SELECTED` are offered,
together with any tool the prompt names.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

import bm25s

from llama_agent.services.tools.registry import Tool

MAX_OFFERED = 8  # up to this many tools, all are offered
SELECTED = 6  # past it, this many are


def relevant_tools(tools: Sequence[Tool], prompt: str, keep: Sequence[str] = ()) -> list[Tool]:
    """`tools` if there are few; else the named ones, those in `keep`, and the best matches,
    in their original order (so prompts for similar requests share a prefix)."""
    if len(tools) <= MAX_OFFERED:
        return list(tools)
    words = _words(prompt)
    wanted = set(keep) | {tool.name for tool in tools if tool.name.lower() in words}
    ranked = [tools[index] for index in _INDEXES.get(tools).best(prompt, SELECTED)]
    # Nothing matching is no reason to offer nothing: fill up in the tools' own order.
    for tool in [*ranked, *tools]:
        if len(wanted) >= max(SELECTED, len(keep)):
            break
        wanted.add(tool.name)
    return [tool for tool in tools if tool.name in wanted]


def _words(prompt: str) -> set[str]:
    """The words of `prompt` that could be tool names (letters, digits, '_', '.', '-')."""
    return {word.rstrip(".-").lower() for word in re.findall(r"[A-Za-z][\w.-]*", prompt)}


def tool_text(tool: Tool) -> str:
    """What a prompt is matched against: the name in words, the description, the parameters and
    the example requests."""
    metadata = tool.loaded.metadata
    parts = [re.sub(r"[_.-]+", " ", tool.name), metadata.description]
    parts += [f"{param.name.replace('_', ' ')} {param.description}" for param in metadata.params]
    parts += [example.request for example in metadata.examples]
    return " ".join(parts)


def _stem(words: list[str]) -> list[str]:
    """Plurals and -ing forms match their stem ("files" finds "file"); no stemming library
    is needed for tool descriptions."""
    return [_stem_word(word) for word in words]


def _stem_word(word: str) -> str:
    for suffix in ("ing", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _tokenize(texts: list[str]) -> list[list[str]]:
    tokens: list[list[str]] = bm25s.tokenize(
        texts, stopwords="english", stemmer=_stem, return_ids=False, show_progress=False
    )
    return tokens


class _Index:
    def __init__(self, tools: Sequence[Tool]) -> None:
        self._retriever = bm25s.BM25()
        self._retriever.index(_tokenize([tool_text(tool) for tool in tools]), show_progress=False)
        self._size = len(tools)

    def best(self, prompt: str, count: int) -> list[int]:
        """Indexes of the best-matching tools, best first; none for a prompt matching nothing."""
        query = _tokenize([prompt])
        if not query[0]:
            return []
        found, scores = self._retriever.retrieve(query, k=min(count, self._size), show_progress=False)
        return [int(index) for index, score in zip(found[0], scores[0], strict=True) if score > 0]


class _IndexCache:
    """The index of the last tool set: runs between reloads share it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[tuple[str, str], ...] = ()
        self._index: _Index | None = None

    def get(self, tools: Sequence[Tool]) -> _Index:
        key = tuple((tool.name, tool.loaded.content_hash) for tool in tools)
        with self._lock:
            if self._index is None or key != self._key:
                self._key, self._index = key, _Index(tools)
            return self._index


_INDEXES = _IndexCache()
