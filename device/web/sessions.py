"""Logins kept in memory: session tokens, their CSRF tokens and flash messages, and the
login rate limit. A restart of the page logs everyone out, which is what a door wants."""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

COOKIE = "peephole_session"


@dataclass
class Session:
    token: str
    csrf: str
    expires: float
    logged_in: bool = False
    # Messages for the next page shown (what the last form did), each (kind, text).
    flashes: list[tuple[str, str]] = field(default_factory=list)

    def flash(self, kind: str, text: str) -> None:
        self.flashes.append((kind, text))

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        return taken


class Sessions:
    """Every live session by token; a login gets a new token (no session fixation)."""

    def __init__(self, lifetime_s: float, limit: int = 1000) -> None:
        self.lifetime_s = lifetime_s
        self._limit = limit
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is None or session.expires < time.time():
                self._sessions.pop(token, None)
                return None
            return session

    def new(self, logged_in: bool = False) -> Session:
        session = Session(
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(32),
            time.time() + self.lifetime_s,
            logged_in,
        )
        with self._lock:
            self._drop_expired()
            if len(self._sessions) >= self._limit:
                # The oldest anonymous ones go first: a flood of visits cannot log people out.
                anonymous = [t for t, s in self._sessions.items() if not s.logged_in]
                for token in anonymous[: len(self._sessions) - self._limit + 1]:
                    del self._sessions[token]
            self._sessions[session.token] = session
        return session

    def end(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.token, None)

    def _drop_expired(self) -> None:
        now = time.time()
        for token in [t for t, s in self._sessions.items() if s.expires < now]:
            del self._sessions[token]


class LoginLimiter:
    """At most ``attempts`` failed logins per client address in a sliding ``window_s``."""

    def __init__(self, attempts: int, window_s: float) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again; 0 when it may now."""
        with self._lock:
            failures = self._recent(client)
            if len(failures) < self.attempts:
                return 0.0
            return max(0.0, failures[0] + self.window_s - time.monotonic())

    def failed(self, client: str) -> None:
        with self._lock:
            self._recent(client).append(time.monotonic())

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.setdefault(client, deque())
        while failures and failures[0] < time.monotonic() - self.window_s:
            failures.popleft()
        return failures
