"""A hybrid logical clock: the order of gallery changes across the doors of a site.

Each change to a person is stamped (wall milliseconds, counter, origin door).
Stamps compare as tuples, so the later change wins everywhere, whatever order
the records arrive in; the counter orders changes within one millisecond or
behind a clock that went backwards, and the origin breaks exact ties. Having
seen a stamp, a door's next one is later, so a change made after learning of
another always wins over it even if the door's own wall clock is behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from device.errors import PeepholeError


@dataclass(frozen=True, order=True)
class Stamp:
    wall_ms: int
    counter: int
    origin: str

    def to_text(self) -> str:
        """Fixed-width, so that text order is stamp order (as SQLite compares it)."""
        return f"{self.wall_ms:015d}.{self.counter:06d}.{self.origin}"

    @classmethod
    def from_text(cls, text: str) -> Stamp:
        wall, counter, origin = text.split(".", 2)
        if not (wall.isdigit() and counter.isdigit() and origin):
            raise PeepholeError(f"not a stamp: {text!r}")
        return cls(int(wall), int(counter), origin)


class HybridClock:
    def __init__(self, origin: str, wall_ms: Callable[[], int] | None = None) -> None:
        self.origin = origin
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._last = Stamp(0, 0, origin)

    def tick(self) -> Stamp:
        """A stamp for a change made here now: later than every stamp made or seen so far."""
        now = self._wall_ms()
        if now > self._last.wall_ms:
            self._last = Stamp(now, 0, self.origin)
        else:
            self._last = Stamp(self._last.wall_ms, self._last.counter + 1, self.origin)
        return self._last

    def observe(self, stamp: Stamp) -> None:
        """Remember a stamp seen in a record, so the next tick comes after it."""
        if (stamp.wall_ms, stamp.counter) > (self._last.wall_ms, self._last.counter):
            self._last = Stamp(stamp.wall_ms, stamp.counter, self.origin)
