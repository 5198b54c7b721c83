"""Keeping visits off the frame loop's path: the loop hands a visit over, a thread stores it.

The loop gives the recorder what it already holds (the track's decision, its
best faces as arrays, a copy of the frame around the best face) when a visit
is announced and again when it ends; encoding the PNGs and the JPEG, writing
SQLite and pruning happen in the recorder's own thread with its own
connection (device/identity/visits.py). A visit queued but not yet written
when the process is killed is lost; a written one never is. Storage errors
are logged once each and never stop the loop.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from device.config import VisitsConfig
from device.errors import PeepholeError
from device.identity.enroll import encode_crop
from device.identity.visits import Visit, VisitCrop, VisitStore
from device.service.tracker import Box, Decision, KeptFace

logger = logging.getLogger(__name__)

# Prune at most this often (seconds); and at start.
PRUNE_INTERVAL_S = 600.0


@dataclass(frozen=True)
class VisitDraft:
    """A visit as the loop hands it over: arrays, not encoded yet."""

    visit_id: str
    door: str
    embedding_key: str
    track_id: int
    decision: Decision
    faces: tuple[KeptFace, ...]
    first_seen: float
    last_seen: float
    # The frame of the best face and the face's box in it: the doorstep is cut out here.
    context: tuple[np.ndarray, Box] | None


class VisitRecorder:
    """Stores the visits it is given, in its own thread. ``close`` waits for what is queued."""

    def __init__(self, path: Path, config: VisitsConfig) -> None:
        self.path = path
        self.config = config
        self._queue: queue.SimpleQueue[VisitDraft | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="visits", daemon=True)
        self._warned = ""
        self.stored = 0
        # The store is opened here, so a broken visits database is refused at start.
        VisitStore.open(path).close()

    def start(self) -> None:
        self._thread.start()

    def keep(self, draft: VisitDraft) -> None:
        """Queue a visit to store (the loop's side: no encoding, no I/O)."""
        self._queue.put(draft)

    def close(self, timeout: float) -> None:
        """Store what is queued (up to ``timeout`` seconds) and stop."""
        if not self._thread.is_alive():
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning(f"visits: {self._queue.qsize()} visit(s) not stored in time")

    def _work(self) -> None:
        try:
            store = VisitStore.open(self.path)
        except PeepholeError as error:
            logger.error(f"visits are not kept: {error}")
            return
        last_prune = 0.0
        try:
            while True:
                if time.monotonic() - last_prune >= PRUNE_INTERVAL_S:
                    last_prune = time.monotonic()
                    self._prune(store)
                draft = self._queue.get()
                if draft is None:
                    return
                self._store(store, draft)
        finally:
            store.close()

    def _store(self, store: VisitStore, draft: VisitDraft) -> None:
        try:
            store.save(encode_visit(draft, self.config.context_quality))
            self.stored += 1
        except PeepholeError as error:
            self._warn(f"cannot keep visit {draft.visit_id}: {error}")

    def _prune(self, store: VisitStore) -> None:
        limit = int(self.config.max_megabytes * 1024 * 1024)
        try:
            removed = store.prune(self.config.max_days, limit)
        except PeepholeError as error:
            self._warn(f"cannot prune visits: {error}")
            return
        if removed:
            logger.info(
                f"visits: pruned {removed} (older than {self.config.max_days:g} days or beyond {self.config.max_megabytes:g} MB)"
            )

    def _warn(self, message: str) -> None:
        if message != self._warned:
            self._warned = message
            logger.warning(message)


def context_region(rgb: np.ndarray, box: Box) -> np.ndarray:
    """The part of the frame around a face's box: the face and as much again each side."""
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = box
    pad_x, pad_y = (x1 - x0), (y1 - y0)
    left, top = max(0, int(x0 - pad_x)), max(0, int(y0 - pad_y))
    right, bottom = min(width, int(x1 + pad_x)), min(height, int(y1 + pad_y))
    return rgb[top:bottom, left:right]


def encode_visit(draft: VisitDraft, jpeg_quality: int) -> Visit:
    """The stored form of a handed-over visit: PNG crops, a JPEG of the doorstep."""
    decision = draft.decision
    crops = tuple(VisitCrop(encode_crop(face.crop), face.report) for face in draft.faces)
    context = None
    region = context_region(*draft.context) if draft.context is not None else None
    if region is not None and region.size:
        bgr = cv2.cvtColor(region, cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        context = bytes(data) if ok else None
    return Visit(
        id=draft.visit_id,
        door=draft.door,
        track_id=draft.track_id,
        first_seen=draft.first_seen,
        last_seen=draft.last_seen,
        person=decision.person,
        known=decision.known,
        similarity=decision.similarity,
        margin=decision.margin,
        liveness=None if decision.liveness is None else decision.liveness.value,
        reason=decision.reason,
        frames=decision.frames_used,
        quality=decision.quality,
        embedding_key=draft.embedding_key,
        outcome=decision.outcome.value,
        crops=crops,
        context_jpeg=context,
    )
