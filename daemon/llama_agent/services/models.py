"""One model, loaded once off the event loop, shared by its runs in fair turns.

The composition root chooses the backend and hands its `ModelLoader` in: the llama.cpp one (one
run at a time, or with `parallel_runs` up to that many at once, decoded as sequences of one
batch), or with remote settings the openai one (up to its `max_concurrent_runs` at once).
Runs waiting for the model are served round-robin across parties (tenants), in arrival order
within one (services/tenants/fair.py).
A model named by a Hugging Face reference is downloaded first.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

from llama_agent.common.memory import release_free_memory
from llama_agent.runtime.models.backend import (
    AnyBackend,
    BatchingBackend,
    CandidateScorer,
    ChatBackend,
    Generation,
    LikelihoodScorer,
    ModelError,
    ModelLoader,
    ModelSettings,
    Turn,
)
from llama_agent.runtime.storage.private_files import private_or_temporary
from llama_agent.runtime.telemetry.metrics import set_model_queue_depth
from llama_agent.services.tenants.fair import FairTurns

if TYPE_CHECKING:
    from llama_agent.runtime.models.hub import DownloadProgress

log = logging.getLogger(__name__)


class ModelService:
    def __init__(self, settings: ModelSettings, cache_dir: Path, loader: ModelLoader) -> None:
        self.settings = settings
        self._cache_dir = cache_dir
        self._loader = loader
        # One thread: llama.cpp contexts are not to be used from two threads at once.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._loading: Future[AnyBackend] | None = None
        self._load_lock = threading.RLock()  # start_loading is also called holding it
        # Set to stop the current load's download: when the last run waiting for it is cancelled,
        # or on close. The eager load at start-up is not counted as waiting.
        self._stop_download = threading.Event()
        self._waiting = 0
        self._closed = False
        self._turns: FairTurns | None = None
        # Told of a Hugging Face download's progress (on its own thread); show_download_bar:
        # a bar on stderr too (the command line; a daemon's stderr is its log).
        self.on_download: DownloadProgress | None = None
        self.show_download_bar = False

    def start_loading(self) -> Future[AnyBackend]:
        """Load in the background (once; again after a failure, in case the file was fixed, or
        after a download stopped because no run waited for it any more)."""
        with self._load_lock:
            if self._loading is None or _failed(self._loading):
                self._stop_download = threading.Event()
                self._loading = self._thread.submit(self._load, self._stop_download)
            return self._loading

    @property
    def loaded(self) -> bool:
        return self._loading is not None and self._loading.done() and not self._loading.exception()

    def _load(self, stop_download: threading.Event) -> AnyBackend:
        try:
            # The model file is loaded as it is found, and prompt states are kept beside it: only
            # from a directory nobody else can write (checked here, off the event loop).
            self._cache_dir = private_or_temporary(self._cache_dir, "models and prompt states")
            return self._loader(self._downloaded(self.settings, stop_download), self._cache_dir)
        except ModelError as error:
            log.error("%s", error)
            raise

    def _downloaded(self, settings: ModelSettings, stop: threading.Event) -> ModelSettings:
        """`settings` with a Hugging Face reference replaced by the file's path in the cache."""
        if settings.hub_reference is None or settings.remote is not None:
            return settings
        # Imported here: huggingface_hub takes a quarter of a second to import.
        from llama_agent.runtime.models.hub import fetch_model, parse_hub_reference

        reference = parse_hub_reference(settings.hub_reference)
        if reference is None:
            raise ModelError(f"not a Hugging Face reference (REPO:FILE.gguf): {settings.hub_reference}")
        path = fetch_model(
            reference,
            self._cache_dir,
            on_progress=self.on_download,
            show_bar=self.show_download_bar,
            cancel=stop,
        )
        return replace(settings, path=path, hub_reference=None)

    async def model(self) -> AnyBackend:
        """The loaded model; raises ModelError saying why it cannot be had.

        Cancelling the last run that waits for a model still downloading stops the download (a
        later run starts it again): nobody is left to wait for gigabytes from a Hub."""
        while True:
            with self._load_lock:
                loading, stopped = self.start_loading(), self._stop_download
                self._waiting += 1
            try:
                return await self._awaited(loading)
            except ModelError:
                if not stopped.is_set() or self._closed:
                    raise
                # That download stopped as nothing waited for it, just before this run came.

    async def _awaited(self, loading: Future[AnyBackend]) -> AnyBackend:
        cancelled = False
        try:
            # Shielded: one waiter's cancellation must not cancel the load the others wait for.
            return await asyncio.shield(asyncio.wrap_future(loading))
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            self._stop_waiting(loading, cancelled)

    def _stop_waiting(self, loading: Future[AnyBackend], cancelled: bool) -> None:
        with self._load_lock:
            self._waiting -= 1
            if cancelled and self._waiting == 0 and loading is self._loading and not loading.done():
                log.info("no run waits for the model any more: stopping its download")
                self._stop_download.set()

    @asynccontextmanager
    async def exclusive(self, model: AnyBackend, party: str = "") -> AsyncIterator[None]:
        """Hold a share of the model for a whole run: all of a local model, one of a server's
        `max_concurrent_runs`. Waiting runs are served round-robin across `party`s (tenants),
        in arrival order within one."""
        if self._turns is None:
            # A local model that batches decodes several runs' turns at once, a server several.
            limit = model.max_concurrent_runs if isinstance(model, (ChatBackend, BatchingBackend)) else 1
            self._turns = FairTurns(limit, on_depth=set_model_queue_depth)
        async with self._turns.turn(party):
            yield
        if not isinstance(model, ChatBackend) and self.runs_waiting == 0:
            # A run's turns free what they allocated, but glibc keeps it in the model thread's
            # arena: about 16 MiB of the daemon's RSS after a run (bench/RESULTS.md, memory),
            # given back here, off the event loop, once no other run waits for the model.
            await asyncio.to_thread(release_free_memory)

    @property
    def runs_waiting(self) -> int:
        """Runs waiting for their turn at the model (the queue's depth)."""
        return self._turns.waiting if self._turns is not None else 0

    async def generate(self, model: AnyBackend, turn: Turn) -> Generation:
        """Generate one grammar-constrained turn: on the model thread for a local model (sent its
        text), over HTTP for a server (sent its messages).

        `turn.on_text` is called on the event loop. If the awaiting task is cancelled, the
        generation stops at its next token (a server's stream is closed) and the model is free
        for the next run. A local model gives each piece to `turn.stop_when` on the model thread,
        so that a stop it asks for takes effect at the very next token.
        """
        if isinstance(model, ChatBackend):
            return await model.chat(turn)
        turn.text()  # a TypeError here, for chat messages, rather than on the model thread
        loop = asyncio.get_running_loop()
        cancel = threading.Event()

        def relay(piece: str) -> None:
            loop.call_soon_threadsafe(turn.on_text, piece)

        on_thread = replace(turn, on_text=relay, cancelled=lambda: cancel.is_set() or turn.cancelled())
        try:
            if _batches(model):  # a sequence of the model's batch, on its thread
                return await asyncio.wrap_future(model.submit(on_thread))
            return await loop.run_in_executor(self._thread, model.generate, on_thread)
        except asyncio.CancelledError:
            cancel.set()
            raise

    async def log_likelihoods(
        self,
        model: LikelihoodScorer,
        prefix: str,
        options: Sequence[str],
        continuation: str,
        context: str = "",
    ) -> list[float]:
        """`model.log_likelihoods` on the model thread (callers hold `exclusive()`)."""
        loop = asyncio.get_running_loop()
        job = partial(model.log_likelihoods, prefix, options, continuation, context)
        return await loop.run_in_executor(self._thread, job)

    async def candidate_likelihoods(
        self, model: CandidateScorer, prefix: str, context: str, candidates: Sequence[str]
    ) -> list[float]:
        """`model.candidate_likelihoods` on the model thread (callers hold `exclusive()`)."""
        loop = asyncio.get_running_loop()
        job = partial(model.candidate_likelihoods, prefix, context, candidates)
        return await loop.run_in_executor(self._thread, job)

    def close(self) -> None:
        self._closed = True
        self._stop_download.set()
        if self.loaded and self._loading is not None:
            model = self._loading.result()
            if _batches(model):
                model.close()
        self._thread.shutdown(wait=False, cancel_futures=True)


def _failed(loading: Future[AnyBackend]) -> bool:
    return loading.done() and (loading.cancelled() or loading.exception() is not None)


__all__ = ["ModelError", "ModelService", "ModelSettings"]


def _batches(model: AnyBackend) -> TypeGuard[BatchingBackend]:
    """Whether the model decodes several runs at once (a local one with parallel_runs > 1)."""
    return isinstance(model, BatchingBackend) and model.max_concurrent_runs > 1
