"""Requests gathered into batches for one model, run on one thread: never two forward passes at once."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from detect.inference import Predictor, Results

__all__ = ["Batcher", "Busy"]

log = logging.getLogger(__name__)


class Busy(RuntimeError):
    """The queue is full: the server answers 503 instead of letting latency grow without bound."""


class Batcher:
    """Queue images; a worker takes up to ``max_batch`` of them (waiting at most ``max_wait_ms``
    for more after the first) and runs them as one batch on its single thread.

    Args:
        predictor: the loaded model.
        max_batch: images per forward pass.
        max_wait_ms: how long the first image of a batch waits for company.
        max_queue: images waiting at most; more are refused with :class:`Busy`.
    """

    def __init__(
        self, predictor: Predictor, max_batch: int = 8, max_wait_ms: float = 5.0, max_queue: int = 64
    ) -> None:
        self.predictor = predictor
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000
        self.max_queue = int(max_queue)
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detect-model")
        self.batches = 0
        self.images = 0

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._thread.shutdown(wait=True)

    async def predict(self, image: np.ndarray, score_thresh: float) -> Results:
        """The results for one RGB image, once its batch has run."""
        assert self._queue is not None, "start() first"
        if self._queue.qsize() >= self.max_queue:
            raise Busy(f"{self._queue.qsize()} images are waiting; try again shortly")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((image, score_thresh, future))
        return await future

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(items) < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0 and self._queue.empty():
                    break
                try:
                    items.append(await asyncio.wait_for(self._queue.get(), max(remaining, 0)))
                except TimeoutError:
                    break
            live = [item for item in items if not item[2].done()]  # a client may have gone
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._thread, self._run, live)
            except Exception as error:  # one bad batch must not stop the worker
                log.exception("batch of %d failed", len(live))
                for _, _, future in live:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, _, future), result in zip(live, results):
                if not future.done():
                    future.set_result(result)

    def _run(self, items: list) -> list[Results]:
        lowest = min(thresh for _, thresh, _ in items)
        results = self.predictor.predict(
            [image for image, _, _ in items], score_thresh=lowest, batch_size=len(items)
        )
        self.batches += 1
        self.images += len(items)
        # Each request keeps its own threshold.
        return [
            r if thresh <= lowest else r.select(r.detections.scores >= thresh)
            for r, (_, thresh, _) in zip(results, items)
        ]
