"""Logging for the ``peephole`` command line: one stderr handler, set up once.

Library modules only make loggers (``logging.getLogger(__name__)``) and never
configure handlers; the command line's group callback calls
:func:`configure_logging` once per invocation.

On a terminal, or any stderr that is not the journal, each line reads
``peephole: <message>`` (info, debug), ``peephole: warning: <message>`` or
``peephole: error: <message>``. Results stay on stdout.

Under systemd, when stderr is the journal (``JOURNAL_STREAM`` names stderr's
device and inode, systemd.exec(5)), each line starts with its syslog priority
instead: ``<3>`` error, ``<4>`` warning, ``<6>`` info, ``<7>`` debug
(sd-daemon(3)). The journal takes the prefix off and records the level
(``SyslogLevelPrefix=``, on by default), so ``journalctl -u peephole -p warning``
shows only the problems; it names the unit and process itself, so these lines
carry neither ``peephole:`` nor a level word.

Verbosity: ``-q`` keeps warnings and errors, the default adds info, ``-v`` adds
debug, also from third-party libraries (which otherwise log warnings and up).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

QUIET, NORMAL, VERBOSE = -1, 0, 1


class StderrHandler(logging.Handler):
    """Writes each record to whatever ``sys.stderr`` is when it is emitted."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


class LineFormatter(logging.Formatter):
    """``peephole: [warning: |error: ]message``, or ``<N>message`` for the journal."""

    def __init__(self, journal: bool) -> None:
        super().__init__("%(message)s")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.journal:
            prefix = f"<{syslog_priority(record.levelno)}>"
        elif record.levelno >= logging.ERROR:
            prefix = "peephole: error: "
        elif record.levelno >= logging.WARNING:
            prefix = "peephole: warning: "
        else:
            prefix = "peephole: "
        # Every line carries the prefix: the journal reads each line as its own record.
        return "\n".join(prefix + line for line in text.splitlines() or [""])


def syslog_priority(level: int) -> int:
    if level >= logging.CRITICAL:
        return 2
    if level >= logging.ERROR:
        return 3
    if level >= logging.WARNING:
        return 4
    if level >= logging.INFO:
        return 6
    return 7


def stderr_is_journal(environ: Mapping[str, str], stream: TextIO) -> bool:
    """True when ``stream`` is the journal stream systemd names in ``JOURNAL_STREAM``.

    The variable is inherited by every child process, so it counts only when its
    device and inode are the stream's own (as sd-daemon(3) advises).
    """
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


def configure_logging(verbosity: int = NORMAL, environ: Mapping[str, str] | None = None) -> None:
    """Install the one stderr handler on the root logger (again: replacing the last one)."""
    journal = stderr_is_journal(os.environ if environ is None else environ, sys.stderr)
    handler = StderrHandler()
    handler.setFormatter(LineFormatter(journal))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity >= VERBOSE else logging.WARNING)
    if verbosity <= QUIET:
        level = logging.WARNING
    elif verbosity == NORMAL:
        level = logging.INFO
    else:
        level = logging.DEBUG
    logging.getLogger("device").setLevel(level)


def ensure_logging() -> None:
    """Configure logging unless a peephole handler is already installed (a command run
    without the group's options, as click's test runner does, still prints its error line)."""
    if not any(isinstance(h, StderrHandler) for h in logging.getLogger().handlers):
        configure_logging()
