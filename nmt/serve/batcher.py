"""Dynamic batching: requests that arrive within a few milliseconds share one search.

Translating one sentence per call wastes the batched search: the model's matrix work
is cheapest per sentence when many sentences go through it together. The HTTP handlers
therefore only queue their sentences; one worker thread takes the first waiting job,
gathers whatever else arrives within ``max_wait`` seconds (or is already waiting, after
a busy spell) up to ``max_batch`` sentences, and translates jobs with the same search
settings as one list. Every job gets its own lines back, in order, through a
:class:`concurrent.futures.Future`, which asyncio handlers can await.

The worker is the only thread that touches the model, so neither PyTorch modules nor
the search settings of the translator need locks. The queue is bounded in sentences:
:meth:`Batcher.submit` refuses work beyond ``max_queue`` instead of letting latency grow
without bound.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("nmt.serve")

Runner = Callable[[Hashable, list[Any]], list[Any]]  # (key, lines) -> one result per line


class QueueFull(Exception):
    """More sentences are waiting than the server accepts."""


@dataclass
class Job:
    key: Hashable  # jobs with equal keys run together (kind of work and search settings)
    lines: list[Any]  # sentences (or sentences with their guidance)
    future: Future = field(default_factory=Future)


_STOP = Job("stop", [])


class Batcher:
    """A worker thread that runs queued jobs in gathered batches (see the module doc)."""

    def __init__(self, run: Runner, max_batch: int, max_wait: float, max_queue: int) -> None:
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait
        self.max_queue = max_queue
        self._jobs: queue.Queue[Job] = queue.Queue()
        self._waiting = 0  # sentences queued or being translated
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="nmt-batcher", daemon=True)
        self.batches = 0  # searches run, for /health
        self.sentences = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._jobs.put(_STOP)
        self._thread.join(timeout=30)

    def submit(self, key: Hashable, lines: list[Any]) -> Future:
        """Queue ``lines``; the future's result is one output per line, in order."""
        with self._lock:
            if self._waiting + len(lines) > self.max_queue:
                raise QueueFull(f"{self._waiting} sentences are waiting (at most {self.max_queue})")
            self._waiting += len(lines)
        job = Job(key, list(lines))
        self._jobs.put(job)
        return job.future

    # --- the worker ---------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            first = self._jobs.get()
            if first is _STOP:
                return
            jobs = self._gather(first)
            stop = _STOP in jobs
            self._run_all([j for j in jobs if j is not _STOP])
            if stop:
                return

    def _gather(self, first: Job) -> list[Job]:
        """``first`` plus the jobs arriving within ``max_wait``, up to ``max_batch`` lines."""
        jobs, lines = [first], len(first.lines)
        deadline = time.monotonic() + self.max_wait
        while lines < self.max_batch:
            remaining = deadline - time.monotonic()
            try:  # after the deadline, only what is already waiting
                job = (
                    self._jobs.get(timeout=remaining) if remaining > 0 else self._jobs.get_nowait()
                )
            except queue.Empty:
                break
            jobs.append(job)
            if job is _STOP:
                break
            lines += len(job.lines)
        return jobs

    def _run_all(self, jobs: list[Job]) -> None:
        groups: dict[Hashable, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.key, []).append(job)
        for key, group in groups.items():
            self._run_group(key, group)

    def _run_group(self, key: Hashable, group: list[Job]) -> None:
        """One search over the lines of every job in ``group``; results split back. Jobs
        cancelled while queued (their client hung up) are dropped, not translated."""
        live = [job for job in group if job.future.set_running_or_notify_cancel()]
        dropped = sum(len(job.lines) for job in group) - sum(len(job.lines) for job in live)
        with self._lock:
            self._waiting -= dropped
        group = live
        if not group:
            return
        lines = [line for job in group for line in job.lines]
        try:
            results = self.run(key, lines)
        except Exception as e:  # reported to each waiting request; the worker goes on
            log.exception("translation failed")
            for job in group:
                job.future.set_exception(e)
        else:
            start = 0
            for job in group:
                job.future.set_result(results[start : start + len(job.lines)])
                start += len(job.lines)
            self.batches += 1
            self.sentences += len(lines)
        finally:
            with self._lock:
                self._waiting -= len(lines)
