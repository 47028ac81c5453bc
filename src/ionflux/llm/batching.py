"""Micro-batching: concurrent embedding requests share one model call on one worker thread.

No timer: while the worker encodes a batch, new requests queue up, and the next batch takes all of them
(up to `max_batch` texts). A lone request therefore waits for nothing, and under load every model call is
as large as the load allows, which is where a transformer's throughput comes from on a CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

R = TypeVar("R")


@dataclass
class _Job(Generic[R]):
    texts: list[str]
    future: asyncio.Future[list[R]]


class MicroBatcher(Generic[R]):
    def __init__(self, run: Callable[[list[str]], list[R]], *, max_batch: int = 64, name: str = "batcher") -> None:
        self._run = run  # called on the worker thread with every text of a batch; one result per text
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Job[R]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # model calls made (for tests and benchmarks)

    async def submit(self, texts: list[str]) -> list[R]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="micro-batcher")
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(texts, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            size = len(jobs[0].texts)
            while size < self.max_batch and not self._queue.empty():
                job = self._queue.get_nowait()
                jobs.append(job)
                size += len(job.texts)
            jobs = [j for j in jobs if not j.future.done()]  # callers that gave up
            if not jobs:
                continue
            texts = [t for j in jobs for t in j.texts]
            try:
                results = await loop.run_in_executor(self._executor, self._run, texts)
            except Exception as exc:
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            self.batches += 1
            start = 0
            for job in jobs:
                part = results[start:start + len(job.texts)]
                start += len(job.texts)
                if not job.future.done():
                    job.future.set_result(part)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)
