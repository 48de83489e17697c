"""Evaluated prompt prefixes kept on disk, so that a new daemon does not evaluate them again.

The agent's prompts start with text that depends only on the tools on offer and the tool the
router chose (instructions, tool descriptions, that tool's examples; the router's own few-shot
requests). Evaluating it is most of a run's time on a small machine (about 8 ms a token on 2
cores), and every editor window, every `llama-agent run` and every restart would pay it again.
Here the llama.cpp state of such a prefix (its KV cells, about 13 KiB a token for Gemma 3 270M:
13 MiB for a 1,000-token start) is written once to `<cache>/prompts/` and read back by the next
run that starts the same way, in this process or another.

Each file holds the tokens and the state, signed with the cache's key as compiled tools are
(runtime/storage/signing.py): a file that does not verify, or that llama.cpp refuses, is
evaluated afresh and never used. The identity signed in covers the model file, the context size
and llama-cpp-python's version, so a changed model never gets another's state.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import struct
from pathlib import Path
from typing import Any

import llama_cpp

from llama_agent.runtime.models.sampling import evaluate_prompt
from llama_agent.runtime.storage.atomic import write_atomically
from llama_agent.runtime.storage.signing import sign, signed

log = logging.getLogger(__name__)

# Shorter prefixes are cheaper to evaluate than to read, sign and write.
MIN_TOKENS = 128
# Files kept (at most about 400 MiB for the embedded model); the least recently used go first.
MAX_FILES = 32
MAGIC = b"llama-agent prompt state 1\n"
MAC_BYTES = 32
SEQUENCE = 0


class PromptStates:
    def __init__(self, directory: Path, key: bytes, model: Path, context_size: int) -> None:
        self.directory = directory
        self._key = key
        stat = model.stat()
        self.restored = 0  # prefixes read back from disk, in this process
        self.written = 0
        self._identity = (
            f"{model.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|ctx={context_size}|"
            f"llama-cpp-python {llama_cpp.__version__}"
        ).encode()

    def evaluate(self, llm: Any, tokens: list[int]) -> int:
        """Leave exactly `tokens` evaluated in `llm` (sequence 0): from the context when it
        holds them, else from disk, else by evaluating what the context does not hold of them
        and writing them to disk. Returns how many tokens were evaluated."""
        if _holds(llm, tokens):
            return 0
        if len(tokens) >= MIN_TOKENS and self._restore(llm, tokens):
            return 0
        evaluated = evaluate_prompt(llm, tokens)  # what the context holds of them is kept
        if len(tokens) >= MIN_TOKENS:
            self._save(llm, tokens)
        return evaluated

    def stored(self, tokens: list[int]) -> bool:
        """Whether a state for exactly these tokens is on disk (verified only when read)."""
        return len(tokens) >= MIN_TOKENS and self._path(tokens).is_file()

    def _path(self, tokens: list[int]) -> Path:
        digest = hashlib.sha256(self._identity + b"\0" + struct.pack(f"<{len(tokens)}i", *tokens))
        return self.directory / f"{digest.hexdigest()[:40]}.state"

    def _signed(self, payload: bytes) -> bytes:
        """What a file's signature covers: the model and context it was made with, and the file."""
        return self._identity + b"\0" + payload

    def _restore(self, llm: Any, tokens: list[int]) -> bool:
        path = self._path(tokens)
        try:
            data = path.read_bytes()
        except OSError:
            return False
        payload, mac = data[:-MAC_BYTES], data[-MAC_BYTES:]
        expected_tokens = MAGIC + struct.pack(f"<I{len(tokens)}i", len(tokens), *tokens)
        if not signed(self._key, self._signed(payload), mac) or not payload.startswith(expected_tokens):
            log.warning("prompt state %s does not verify: evaluating the prompt afresh", path.name)
            return False
        state = payload[len(expected_tokens) :]
        sequence = _sequence(llm)
        llm.reset()
        llm._ctx.kv_cache_seq_rm(sequence, 0, -1)
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buffer, len(state), sequence) == 0:
            log.warning("llama.cpp refused prompt state %s: evaluating the prompt afresh", path.name)
            llm._ctx.kv_cache_seq_rm(sequence, 0, -1)
            return False
        llm.input_ids[: len(tokens)] = tokens
        llm.n_tokens = len(tokens)
        self.restored += 1
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: kept when older files are pruned
        return True

    def _save(self, llm: Any, tokens: list[int]) -> None:
        sequence = _sequence(llm)
        size = llama_cpp.llama_state_seq_get_size(llm._ctx.ctx, sequence)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(llm._ctx.ctx, buffer, size, sequence)
        payload = MAGIC + struct.pack(f"<I{len(tokens)}i", len(tokens), *tokens) + bytes(buffer)[:written]
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomically(self._path(tokens), payload + sign(self._key, self._signed(payload)))
            self.written += 1
            self._prune()
        except OSError as error:
            log.warning("cannot keep prompt states in %s: %s", self.directory, error)

    def _prune(self) -> None:
        files = sorted(self.directory.glob("*.state"), key=lambda path: path.stat().st_mtime_ns)
        for stale in files[:-MAX_FILES]:
            with contextlib.suppress(OSError):
                stale.unlink()


def _sequence(llm: Any) -> int:
    """The sequence `llm` evaluates into: 0 for a `Llama`; a batched decoder's slot says its own
    (runtime/models/batched.py). A state is one sequence's cells: it reads back into any."""
    return int(getattr(llm, "sequence", SEQUENCE))


def _holds(llm: Any, tokens: list[int]) -> bool:
    return bool(llm.n_tokens == len(tokens) and list(llm.input_ids[: len(tokens)]) == tokens)
