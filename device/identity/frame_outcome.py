"""What enrollment made of one frame or photo.

A module of its own, without OpenCV: the web page's process receives these from its
model worker, and unpickling one imports the module that defines it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrameOutcome:
    """What happened to one frame: a sample was taken (reason None) or why not."""

    source: str
    reason: str | None

    @property
    def accepted(self) -> bool:
        return self.reason is None
