"""The soak in short (one minute): the broker bounces every 12 s under a paced looping clip.

Across repeated broker outages every event printed reaches a persistent
subscriber, in order, once per event_id (a QoS 1 repeat, counted, is the same
message and is dropped by its event_id), nothing stays in the outbox,
frames keep flowing at the camera's pace, and memory does not climb. The long
version is ``python -m bench.soak --minutes 30`` (results in docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path

from bench.soak import SoakOptions, soak
from tests.conftest import require_shared


def test_one_minute_soak_with_the_broker_bouncing(
    tmp_path: Path,
    reference_f32: tuple[Path, Path],
    mosquitto_path: Path,
) -> None:
    require_shared("data/video/short_hamilton_clip.mp4")
    options = SoakOptions(
        minutes=1.0,
        bounce_every=12.0,
        down_for=3.0,
        settle=10.0,
        fps=15.0,
        model=reference_f32[0],
        manifest=reference_f32[1],
    )
    result = soak(options, tmp_path)
    report = result.report()
    print(report)
    assert result.returncode == 0, result.summary
    assert result.bounces >= 3, report
    assert result.reconnects >= result.bounces + 1, report
    assert result.printed >= 10, report
    assert result.lost == 0 and result.out_of_order == 0, report
    # At-least-once: a repeat (its PUBACK lost in a broker stop) is the same message.
    assert result.duplicates_that_differ == 0, report
    assert result.duplicates <= 2 * result.bounces, report
    assert result.received == result.printed and result.left_in_outbox == 0, report
    # Paced at 15 fps: frames keep coming through every outage.
    assert report["fps_min"] is not None and report["fps_min"] >= 0.6 * options.fps, report
    assert report["fps_median"] >= 0.9 * options.fps, report
    warm = [mib for at, mib in result.rss_mib if at >= 20.0]
    assert warm and max(warm) - warm[0] < 40.0, report
