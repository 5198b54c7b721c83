"""The page's model work in a child process, so that the page's own process stays small.

Naming a visit, the gate verdicts of its faces (they are embedded to find
near-duplicates), undoing a naming and an uploaded photo need the face models,
and with them OpenCV and LiteRT, which a page listing visits does not need (the
child is 95 MB resident, the page 77: docs/benchmarks.md). The page runs these
calls in one child process (spawned, so it shares nothing with the page's threads;
one call at a time, as the model runs anyway), started by the first such call and
ended after ``idle_seconds`` without one. The
page's own process never imports OpenCV or LiteRT (tests/web/test_memory.py).
A child that dies (killed, out of memory) fails the call in progress, or the next
one, in one line; the call after starts a new child; the page goes on.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Concatenate, ParamSpec, TypeVar

from device.errors import ModelError
from device.identity.frame_outcome import FrameOutcome
from device.identity.naming import CropVerdict, NamingResult, UndoResult
from device.service.household import Household
from device.site.model_choice import ModelChoice

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# The child's household, made once by ``_start``.
_household: Household | None = None


class ModelWorker:
    """Runs household methods that need the models in a child process, one at a time."""

    def __init__(self, models: ModelChoice, idle_seconds: float = 120.0) -> None:
        self.models = models
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._busy = 0
        self._idle_timer: threading.Timer | None = None

    def call(
        self, method: Callable[Concatenate[Household, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """``method(household, *args, **kwargs)`` in the child; its errors raised here."""
        with self._lock:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            if self._pool is None:
                self._pool = self._start_pool()
            pool = self._pool
            self._busy += 1
        try:
            return pool.submit(_run, method, args, kwargs).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            logger.error("the page's model worker stopped during a call")
            raise ModelError("the face models' process stopped (see the log); try again") from None
        finally:
            with self._lock:
                self._busy -= 1
                if self._busy == 0 and self._pool is not None:
                    self._idle_timer = threading.Timer(self.idle_seconds, self._stop_if_idle)
                    self._idle_timer.daemon = True
                    self._idle_timer.start()

    def stop(self) -> None:
        """End the child now (waiting for a call in progress)."""
        with self._lock:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _stop_if_idle(self) -> None:
        with self._lock:
            if self._busy or self._pool is None:
                return
            pool, self._pool = self._pool, None
            self._idle_timer = None
        logger.debug("model worker idle: stopped")
        pool.shutdown(wait=True)

    def _start_pool(self) -> ProcessPoolExecutor:
        root = logging.getLogger()
        formatters = [h.formatter for h in root.handlers if h.formatter is not None]
        levels = (root.level, logging.getLogger("device").level)
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=(self.models, formatters, levels),
        )


class OffloadedHousehold(Household):
    """A Household whose model work runs in a :class:`ModelWorker`; the rest runs here."""

    def __init__(self, worker: ModelWorker) -> None:
        super().__init__(worker.models.config, worker.models)
        self.worker = worker

    def verdicts(self, visit_id: str) -> list[CropVerdict]:
        return self.worker.call(Household.verdicts, visit_id)

    def name_visit(
        self,
        visit_id: str,
        name: str,
        *,
        append: bool = False,
        reassign: bool = False,
        allow_suspect: bool = False,
    ) -> NamingResult:
        return self.worker.call(
            Household.name_visit,
            visit_id,
            name,
            append=append,
            reassign=reassign,
            allow_suspect=allow_suspect,
        )

    def undo_last_naming(self, expect_visit: str | None = None) -> UndoResult:
        return self.worker.call(Household.undo_last_naming, expect_visit)

    def enroll_photo(
        self, name: str, data: bytes, *, append: bool, source: str = "upload"
    ) -> FrameOutcome:
        return self.worker.call(Household.enroll_photo, name, data, append=append, source=source)


def _start(
    models: ModelChoice, formatters: list[logging.Formatter], levels: tuple[int, int]
) -> None:
    """In the child: the page's logging, a household over the same models, and an end
    when the page's process ends (even by SIGKILL: the child holds its own queue's pipe
    open, so it would never read an end of file)."""
    global _household
    page = os.getppid()
    threading.Thread(target=_end_with, args=(page,), daemon=True).start()
    root = logging.getLogger()
    for formatter in formatters:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(levels[0])
    logging.getLogger("device").setLevel(levels[1])
    _household = Household(models.config, models)


def _end_with(page: int) -> None:
    while os.getppid() == page:
        time.sleep(1.0)
    os._exit(0)


def _run(method: Callable[..., R], args: tuple[object, ...], kwargs: dict[str, object]) -> R:
    assert _household is not None, "the worker's initializer did not run"
    return method(_household, *args, **kwargs)
