"""The stranger-rate arithmetic behind the naming threshold (pure numpy)."""

from __future__ import annotations

import pytest

from device.identity.calibration import allowed_named, wilson_interval


def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = wilson_interval(5, 100)
    assert low == pytest.approx(0.0215, abs=1e-4)
    assert high == pytest.approx(0.1118, abs=1e-4)
    assert wilson_interval(0, 100)[0] == 0.0
    assert wilson_interval(0, 100)[1] == pytest.approx(0.0370, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_allowed_named_keeps_the_upper_bound_within_the_target() -> None:
    for total in (500, 3849, 20000):
        allowed = allowed_named(total, 0.01)
        assert wilson_interval(allowed, total)[1] <= 0.01
        assert wilson_interval(allowed + 1, total)[1] > 0.01
        # the point estimate then sits below the target, more so for small sets
        assert allowed / total < 0.01
    assert allowed_named(100, 0.01) == 0
