"""Dynamic batching of the service's requests: texts of requests that arrive together share one annotator call,
within the limits of `ServeLimits`; a failed batch is rerun request by request, and a request whose client went
away before its batch started is dropped, not generated (``texts_dropped`` counts the texts of every client that
went away before its answer, at once, whether its batch had started or not)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .access import RequestError
from .options import ServeLimits


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future  # cancelled when the client went away: the batcher skips the job


class ClientGone(Exception):
    """The client closed its connection before its answer was ready."""


@dataclass
class RequestBatcher:
    """Dynamic batching: collects waiting requests into one engine call at a time."""

    run: object  # texts -> results (the engine; a plain callable in tests)
    limits: ServeLimits
    pending: int = 0  # texts waiting or running for clients still there
    batches: int = 0
    texts_done: int = 0
    texts_dropped: int = 0  # texts of clients that went away before their answer was ready
    largest_batch: int = 0
    poll_s: float = 0.1  # how often a waiting request checks that its client is still there
    _queue: asyncio.Queue | None = None
    _held: _Job | None = None
    _task: asyncio.Task | None = None
    _executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="generate"))

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list[str], gone: Callable[[], Awaitable[bool]] | None = None) -> list[dict]:
        """The results for ``texts`` once their batch ran; RequestError(503) when the queue is full.

        ``gone`` (a `Request.is_disconnected`) is asked every ``poll_s`` while the texts wait: once
        the client is gone the job is cancelled (not generated if its batch has not started) and
        `ClientGone` raised, so abandoned requests do not hold the queue."""
        if self.pending + len(texts) > self.limits.max_queue:
            raise RequestError(503, f"busy: {self.pending} texts queued (limit {self.limits.max_queue}); retry later")
        self.pending += len(texts)
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(texts, future))
        try:
            while gone is not None:
                done, _ = await asyncio.wait({future}, timeout=self.poll_s)
                if done:
                    break
                if await gone():
                    raise ClientGone
            return await future
        except (ClientGone, asyncio.CancelledError):  # nobody will read these results
            # Counted now, not when the batcher reaches the job: that may be after a long batch, or the job may
            # be in the batch that is running.
            self.texts_dropped += len(texts)
            raise
        finally:
            future.cancel()  # no-op once answered; else the batcher skips it
            self.pending -= len(texts)

    async def _next_job(self, deadline: float | None) -> _Job | None:
        """The next job whose client still waits; None once ``deadline`` (loop time) has passed."""
        loop = asyncio.get_running_loop()
        while True:
            if self._held is not None:
                job, self._held = self._held, None
            elif not self._queue.empty():
                job = self._queue.get_nowait()
            elif deadline is None:
                job = await self._queue.get()
            else:
                try:
                    job = await asyncio.wait_for(self._queue.get(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    return None
            if not job.future.done():
                return job  # else its client went away (counted by `submit`): never generated

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._next_job(None)]
            count = len(jobs[0].texts)
            deadline = loop.time() + self.limits.max_wait_ms / 1000
            while count < self.limits.max_batch:
                job = await self._next_job(deadline)
                if job is None:
                    break
                if count + len(job.texts) > self.limits.max_batch:
                    self._held = job  # first in the next batch
                    break
                jobs.append(job)
                count += len(job.texts)
            live = [job for job in jobs if not job.future.done()]  # clients that went away while it gathered
            if not live:
                continue
            outcomes = await loop.run_in_executor(self._executor, self._run_jobs, live)
            self.batches += 1
            self.largest_batch = max(self.largest_batch, sum(len(job.texts) for job in live))
            for job, outcome in zip(live, outcomes):
                if job.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    self.texts_done += len(job.texts)
                    job.future.set_result(outcome)

    def _run_jobs(self, jobs: list[_Job]) -> list:
        """Results per job; when the shared batch fails, each job alone, so one bad job fails alone."""
        texts = [text for job in jobs for text in job.texts]
        try:
            results = self.run(texts)
        except Exception as exc:
            if len(jobs) == 1:
                return [exc]
            return [self._run_jobs([job])[0] for job in jobs]
        outcomes, cursor = [], 0
        for job in jobs:
            outcomes.append(results[cursor : cursor + len(job.texts)])
            cursor += len(job.texts)
        return outcomes
