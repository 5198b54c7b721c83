"""A training run's progress: ``metrics.jsonl`` (one record per measurement) and its plot.

The plot (``report.png``) is drawn with OpenCV, as the ROC plot is, so training
needs no plotting library: one panel per metric (loss, held-out cosine to the
teacher, LFW accuracy) against the step. Records survive a resumed run, so the
plot always covers the whole run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

METRICS = ("loss", "holdout_cosine", "lfw")
PANEL_WIDTH, PANEL_HEIGHT, MARGIN = 640, 200, 50


class RunReport:
    def __init__(self, run_dir: Path) -> None:
        self.records_path = run_dir / "metrics.jsonl"
        self.plot_path = run_dir / "report.png"

    def records(self) -> list[dict[str, float]]:
        if not self.records_path.is_file():
            return []
        return [json.loads(line) for line in self.records_path.read_text().splitlines() if line]

    def last_step(self) -> int | None:
        """The step of the last measurement (a record with more than the loss), if any."""
        measured = [r["step"] for r in self.records() if set(r) - {"step", "loss"}]
        return int(measured[-1]) if measured else None

    def add(self, step: int, **metrics: float | None) -> None:
        record = {"step": step, **{k: v for k, v in metrics.items() if v is not None}}
        if len(record) == 1:
            return
        with open(self.records_path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")
        write_plot(self.plot_path, self.records())


def write_plot(path: Path, records: list[dict[str, float]]) -> None:
    panels = [_panel(name, records) for name in METRICS]
    cv2.imwrite(str(path), np.concatenate(panels, axis=0))


def _panel(name: str, records: list[dict[str, float]]) -> np.ndarray:
    canvas = np.full((PANEL_HEIGHT, PANEL_WIDTH, 3), 255, dtype=np.uint8)
    points = [(r["step"], r[name]) for r in records if name in r and math.isfinite(r[name])]
    cv2.putText(canvas, name, (MARGIN, 20), 0, 0.5, (0, 0, 0), 1)
    left, right = MARGIN, PANEL_WIDTH - 20
    top, bottom = 30, PANEL_HEIGHT - 30
    cv2.rectangle(canvas, (left, top), (right, bottom), (0, 0, 0), 1)
    if not points:
        return canvas
    steps = np.array([p[0] for p in points], dtype=float)
    values = np.array([p[1] for p in points], dtype=float)
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    first, last = float(steps.min()), max(float(steps.max()), float(steps.min()) + 1)
    xs = left + (steps - first) / (last - first) * (right - left)
    ys = bottom - (values - low) / (high - low) * (bottom - top)
    polyline = np.stack([xs, ys], axis=1).astype(np.int32)
    cv2.polylines(canvas, [polyline], False, (200, 60, 0), 2)
    for x, y in polyline:
        cv2.circle(canvas, (int(x), int(y)), 2, (200, 60, 0), -1)
    cv2.putText(canvas, f"{high:.4g}", (2, top + 10), 0, 0.35, (0, 0, 0), 1)
    cv2.putText(canvas, f"{low:.4g}", (2, bottom), 0, 0.35, (0, 0, 0), 1)
    cv2.putText(canvas, f"step {int(first)}", (left, bottom + 18), 0, 0.4, (0, 0, 0), 1)
    cv2.putText(canvas, f"step {int(last)}", (right - 80, bottom + 18), 0, 0.4, (0, 0, 0), 1)
    return canvas
