"""systemd's sd_notify protocol over ``$NOTIFY_SOCKET``, with the standard library only.

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op, so the loop can
always call it. The watchdog is fed only when systemd asked for one
(``$WATCHDOG_USEC``), at a third of its period, and only by the frame loop: a
camera that hangs stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import os
import socket
import time


class SystemdNotifier:
    """Sends READY=1, WATCHDOG=1, STATUS=... and STOPPING=1 to the service manager."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._socket: socket.socket | None = None
        self.watchdog_interval = _watchdog_interval(env)
        self._last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send one datagram of newline-separated ``KEY=VALUE`` lines; False if not delivered."""
        if self._address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            # Never block the frame loop on a manager that is not reading.
            self._socket.sendto(
                "\n".join(assignments).encode("utf-8"), socket.MSG_DONTWAIT, self._address
            )
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> None:
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def watchdog(self, now: float | None = None) -> None:
        """Feed the watchdog if one is configured and a ping is due."""
        if self.watchdog_interval is None:
            return
        now = time.monotonic() if now is None else now
        if now - self._last_ping >= self.watchdog_interval:
            self._last_ping = now
            self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _socket_address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        # Abstract namespace socket: a leading NUL byte instead of '@'.
        return b"\0" + value[1:].encode("utf-8")
    if value.startswith("/"):
        return value
    return None


def _watchdog_interval(env: dict[str, str]) -> float | None:
    """Seconds between pings: a third of WATCHDOG_USEC, when the watchdog is meant for us."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000 / 3
