"""Benchmark scripts, run as files from the repository root (python bench/NAME.py); see README.md."""
