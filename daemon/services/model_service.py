"""One model, loaded once off the event loop, used by one run at a time, in arrival order.

The backend is the llama.cpp one unless the composition root passes another `ModelLoader`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from daemon.runtime.backend import (
    Generation,
    LikelihoodScorer,
    ModelBackend,
    ModelError,
    ModelLoader,
    ModelSettings,
)
from daemon.runtime.model import load_llama

log = logging.getLogger(__name__)


class ModelService:
    def __init__(self, settings: ModelSettings, cache_dir: Path, loader: ModelLoader | None = None) -> None:
        self.settings = settings
        self._cache_dir = cache_dir
        self._loader = loader or load_llama
        # One thread: llama.cpp contexts are not to be used from two threads at once.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._loading: Future[ModelBackend] | None = None
        self._load_lock = threading.Lock()
        self._turns: asyncio.Lock | None = None

    def start_loading(self) -> Future[ModelBackend]:
        """Load in the background (once; again after a failure, in case the file was fixed)."""
        with self._load_lock:
            failed = self._loading is not None and self._loading.done() and self._loading.exception()
            if self._loading is None or failed:
                self._loading = self._thread.submit(self._load)
            return self._loading

    @property
    def loaded(self) -> bool:
        return self._loading is not None and self._loading.done() and not self._loading.exception()

    def _load(self) -> ModelBackend:
        try:
            return self._loader(self.settings, self._cache_dir)
        except ModelError as error:
            log.error("%s", error)
            raise

    async def model(self) -> ModelBackend:
        """The loaded model; raises ModelError saying why it cannot be had."""
        return await asyncio.wrap_future(self.start_loading())

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the model for a whole run; asyncio.Lock is fair, so runs go in arrival order."""
        if self._turns is None:
            self._turns = asyncio.Lock()
        async with self._turns:
            yield

    async def generate(
        self,
        model: ModelBackend,
        on_text: Callable[[str], None],
        cancel: threading.Event,
        stop_when: Callable[[str], bool] = lambda _: False,
        **options: Any,
    ) -> Generation:
        """Run one grammar-constrained generation on the model thread.

        `on_text` is called on the event loop. If the awaiting task is cancelled, the
        generation stops at its next token and the model is free for the next run.
        `stop_when` sees each piece on the model thread, so that a stop it asks for takes
        effect at the very next token: it sets `cancel`.
        """
        loop = asyncio.get_running_loop()

        def relay(piece: str) -> None:
            if stop_when(piece):
                cancel.set()
            loop.call_soon_threadsafe(on_text, piece)

        job = partial(model.generate, on_text=relay, cancelled=cancel.is_set, **options)
        try:
            return await loop.run_in_executor(self._thread, job)
        except asyncio.CancelledError:
            cancel.set()
            raise

    async def log_likelihoods(
        self, model: LikelihoodScorer, prefix: str, options: Sequence[str], continuation: str
    ) -> list[float]:
        """`model.log_likelihoods` on the model thread (callers hold `exclusive()`)."""
        loop = asyncio.get_running_loop()
        job = partial(model.log_likelihoods, prefix, options, continuation)
        return await loop.run_in_executor(self._thread, job)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


__all__ = ["ModelError", "ModelService", "ModelSettings"]
