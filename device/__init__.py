"""peephole's device runtime."""

from __future__ import annotations

import os
import shutil
import sys


def command_name() -> str:
    """How the user can call peephole again: ``peephole`` where that is on PATH and is this
    program, else the path it was started by (``.venv/bin/peephole`` after scripts/run.sh)."""
    started = sys.argv[0] if sys.argv and sys.argv[0] else "peephole"
    on_path = shutil.which("peephole")
    if on_path and os.path.exists(started) and os.path.samefile(on_path, started):
        return "peephole"
    if os.path.basename(started) == "peephole" and os.path.exists(started):
        return os.path.relpath(started) if not os.path.isabs(started) else started
    return "peephole"
