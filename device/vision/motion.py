"""The motion gate: whether anything on the doorstep changed since the last frames.

A cheap change test on a small grey copy of the frame, as motion-triggered
cameras run before anything expensive: the frame is shrunk (``[motion]
width`` pixels wide, height as the frame's aspect), its brightness scaled to
the background's so that a global light change (a cloud, the camera's
exposure) moves nothing, and each pixel compared with a running background
against its own running noise. Changed pixels are counted per cell, so that
scattered sensor noise never adds up to a change, and the background follows
slow changes (the sun moving across the door, a parcel left there) at
``learning_rate`` per frame; the noise is learnt only where nothing moved.
"""

from __future__ import annotations

import cv2
import numpy as np

from device.config import MotionConfig


class MotionGate:
    """Says for each frame whether it changed against the background, and learns it."""

    def __init__(self, options: MotionConfig) -> None:
        self.options = options
        self._background: np.ndarray | None = None
        self._variance: np.ndarray | None = None
        self._last: np.ndarray | None = None

    def changed(self, image_rgb: np.ndarray) -> bool:
        """Whether this frame differs from the background (the first frame always does)."""
        small = self.small_grey(image_rgb)
        options = self.options
        if self._background is None or self._background.shape != small.shape:
            self._background = small
            self._variance = np.full_like(
                small, (options.min_difference / options.noise_sigmas) ** 2
            )
            return True
        assert self._variance is not None  # set with the background
        background, variance = self._background, self._variance
        # OpenCV's calls where they save numpy's temporaries: on these 64x36 arrays a
        # temporary costs about as much as its arithmetic (1-7 us each).
        level = cv2.mean(small)[0]
        if level > 1.0:
            small *= cv2.mean(background)[0] / level
        difference = small - background
        squared = difference * difference
        limit = np.maximum(variance * options.noise_sigmas**2, options.min_difference**2)
        moved = squared > limit
        changed = self._changed_cells(moved) >= options.min_cells
        self._last = small
        rate = options.learning_rate
        cv2.accumulateWeighted(small, background, rate)
        # The noise is learnt where nothing moved: a visitor does not raise it.
        cv2.accumulateWeighted(squared, variance, rate, mask=np.logical_not(moved).view(np.uint8))
        return changed

    def empty(self) -> None:
        """The last frame holds no face (the detector looked): it is the background now.

        Without this, a scene that changed for good (a visitor who stood long enough to
        enter the background has left, the light was switched on) would count as changed
        for some 50 frames while the background caught up, each of them detected.
        """
        if self._last is not None and self._background is not None:
            self._background[...] = self._last

    def small_grey(self, image_rgb: np.ndarray) -> np.ndarray:
        """The frame shrunk to ``width`` pixels wide, grey, as float32.

        Bilinear to twice the size, then 2x2 means: each pixel averages about
        sixteen of the frame's, which quiets sensor noise for a fraction of what
        an area resize of the whole frame costs.
        """
        height, width = image_rgb.shape[:2]
        small_w = min(self.options.width, width)
        small_h = max(1, round(height * small_w / width))
        twice = cv2.resize(image_rgb, (2 * small_w, 2 * small_h), interpolation=cv2.INTER_LINEAR)
        small = cv2.resize(twice, (small_w, small_h), interpolation=cv2.INTER_AREA)
        grey: np.ndarray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return grey

    def _changed_cells(self, moved: np.ndarray) -> int:
        cell = self.options.cell
        rows, columns = moved.shape[0] // cell, moved.shape[1] // cell
        if rows == 0 or columns == 0:
            return int(np.count_nonzero(moved) >= self.options.cell_share * moved.size)
        whole = moved[: rows * cell, : columns * cell].astype(np.float32)
        shares = cv2.resize(whole, (columns, rows), interpolation=cv2.INTER_AREA)
        return int(np.count_nonzero(shares >= self.options.cell_share))
