"""The ``peephole`` command line; ``main`` is its click group."""

from device.cli.main import main

__all__ = ["main"]
