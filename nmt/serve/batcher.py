"""The server's worker: one thread that owns the translator and translates queued requests in micro-batches.

Requests come as (lines, options, future); the thread takes the first, waits up to `max_wait_ms` for more with
the same options (beam, alignment) within a line and token budget, translates all their lines in one
`translate_batch` call and gives each request its own slice. If that call fails, each request of the batch is
translated alone, so only the one whose lines fail gets the error; the others get their answers.

Knows nothing about HTTP, JSON or Starlette: lines in, futures of `Translation`s out."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import cast

from nmt.config import Limits
from nmt.line_translator import LineTranslator, Translation


class ShuttingDown(RuntimeError):
    """The batcher is closed: no more requests are taken."""


@dataclass(frozen=True)
class Options:
    """How a request's lines are searched: the beam size (the n-best list holds up to that many), whether
    each translation carries its word alignment, and what a line is cut into (DecodeConfig.split; None: the
    server's). Requests batch together only with the same options."""

    beam: int
    align: bool = False
    split: str | None = None


@dataclass
class _Job:
    lines: list[str]
    tokens: int
    future: Future[list[Translation]]
    options: Options | None  # None: the translator's own settings


def _resolve(future: Future[list[Translation]], result: list[Translation] | BaseException) -> None:
    """Set a future's result or exception, unless its client went away (the future was cancelled)."""
    if future.done():
        return
    try:
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
    except InvalidStateError:  # cancelled between the check and the set
        pass


class Batcher:
    """One worker thread that owns the translator and translates queued requests in batches.

    Given a function instead of a translator, the worker calls it first, so that the model is loaded and run
    on the same thread: torch's intra-op threads ran a translation 3.5x slower on a thread other than the one
    that first used torch (measured on 2 cores: 204 vs 59 ms a sentence; loaded and run on the worker: 61)."""

    def __init__(self, translator: LineTranslator | Callable[[], LineTranslator], limits: Limits) -> None:
        self.limits = limits
        self._factory = translator if callable(translator) else None
        self.translator: LineTranslator = cast(LineTranslator, None if callable(translator) else translator)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._ready = threading.Event()
        self._load_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="nmt-serve-batcher", daemon=True)
        self.batches = 0  # translate_batch calls made (for tests and monitoring)
        self._variants: dict[Options, LineTranslator] = {}  # the translator for other options (worker only)
        self._thread.start()
        self._ready.wait()
        if self._load_error is not None:
            raise self._load_error
        self.max_src_tokens = int(getattr(self.translator, "max_src_tokens", 1 << 30))

    def tokens(self, line: str) -> int:
        """A cheap estimate of a line's source tokens (BPE pieces run about four characters)."""
        return min(1 + len(line) // 4, self.max_src_tokens)

    def submit(self, lines: list[str], options: Options | None = None) -> Future[list[Translation]]:
        """Queue lines for translation (with `options`, else the translator's own settings); the future gives
        one Translation per line, in order."""
        future: Future[list[Translation]] = Future()
        with self._lock:
            if self._closed:
                raise ShuttingDown("the server is shutting down")
            self._queue.put(_Job(lines, sum(self.tokens(line) for line in lines), future, options))
        return future

    def _translator(self, options: Options | None) -> LineTranslator:
        """The translator for `options`: the loaded one with another beam, or with alignments (made once)."""
        base = self.translator
        if options is None:
            return base
        split = options.split or base.config.split
        if options.beam == base.config.beam_size and options.align == base.align and split == base.config.split:
            return base
        if options not in self._variants:
            variant = base.with_config(beam_size=options.beam, nbest=options.beam, align=options.align, split=split)
            self._variants[options] = variant
        return self._variants[options]

    def close(self, timeout: float | None = None) -> None:
        """Take no more requests, translate those queued, and stop the worker."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)  # after every job: the worker drains the queue first
        self._thread.join(timeout)

    def _run(self) -> None:
        if self._factory is not None:
            try:
                self.translator = self._factory()
            except BaseException as e:  # said by __init__, on the caller's thread
                self._load_error = e
        self._ready.set()
        if self._load_error is not None:
            return
        limits = self.limits
        carried: _Job | None = None
        stopping = False
        while not stopping or carried is not None:
            job = carried if carried is not None else self._queue.get()
            carried = None
            if job is None:
                break
            batch, lines, tokens = [job], len(job.lines), job.tokens
            deadline = time.monotonic() + limits.max_wait_ms / 1000
            while not stopping and lines < limits.max_lines and tokens < limits.batch_tokens:
                remaining = deadline - time.monotonic()
                try:
                    following = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if following is None:
                    stopping = True
                elif (
                    following.options != job.options
                    or lines + len(following.lines) > limits.max_lines
                    or tokens + following.tokens > limits.batch_tokens
                ):
                    carried = following  # the first of the next batch
                    break
                else:
                    batch.append(following)
                    lines += len(following.lines)
                    tokens += following.tokens
            self._translate(batch)

    def _translate(self, batch: list[_Job]) -> None:
        lines = [line for job in batch for line in job.lines]
        try:
            translator = self._translator(batch[0].options)
        except Exception as e:
            for job in batch:
                _resolve(job.future, e)
            return
        try:
            self.batches += 1
            found = translator.translate_batch(lines)
        except Exception as e:
            if len(batch) == 1:
                _resolve(batch[0].future, e)
                return
            for job in batch:  # find the request at fault: each alone
                try:
                    self.batches += 1
                    _resolve(job.future, translator.translate_batch(job.lines))
                except Exception as alone:
                    _resolve(job.future, alone)
            return
        start = 0
        for job in batch:
            _resolve(job.future, found[start : start + len(job.lines)])
            start += len(job.lines)
