"""``peephole run``: the camera loop as a command and a systemd service."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from device.cli.app import AppContext, pass_app
from device.config import Config
from device.service.door import Door
from device.service.mqtt import parse_broker

logger = logging.getLogger(__name__)


def apply_overrides(
    config: Config,
    source: str | None,
    broker: str | None,
    device_id: str | None,
    realtime: bool | None,
    outbox: Path | None,
) -> None:
    if source is not None:
        config.camera.source = source
    if broker is not None:
        host, port = parse_broker(broker)
        config.mqtt.hosts = []
        config.mqtt.host = host
        if port is not None:
            config.mqtt.port = port
    if device_id is not None:
        config.mqtt.device_id = device_id
    if realtime is not None:
        config.camera.realtime = realtime
    if outbox is not None:
        config.runtime.outbox_path = str(outbox)


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT end the loop after the current frame; a second one exits at once."""

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


@click.command()
@click.option("--source", help="picamera2, a camera index, a URL, a video file or an image folder.")
@click.option("--mqtt", "broker", metavar="HOST[:PORT]", help="MQTT broker (overrides config).")
@click.option("--device-id", help="Device id in MQTT topics (overrides config).")
@click.option("--outbox", type=click.Path(dir_okay=False, path_type=Path), help="Outbox database.")
@click.option(
    "--realtime/--fast",
    default=None,
    help="Pace video files to their frame rate, or process them as fast as possible (default).",
)
@click.option(
    "--stop-after-frames", type=click.IntRange(min=1), help="Stop after this many frames."
)
@pass_app
def run(
    app: AppContext,
    source: str | None,
    broker: str | None,
    device_id: str | None,
    outbox: Path | None,
    realtime: bool | None,
    stop_after_frames: int | None,
) -> None:
    """Watch the door: recognise visitors and publish events (stdout and MQTT)."""
    config = app.config
    apply_overrides(config, source, broker, device_id, realtime, outbox)
    config.mqtt.validate()  # again: --mqtt and --device-id may have changed it
    stop = threading.Event()
    install_stop_handlers(stop)
    door = Door.from_config(config, app.models, pipeline=app.pipeline(), stop=stop)
    with door:
        door.start()
        stats = door.run(stop_after_frames)
    waiting = door.outbox_left
    logger.info(stats.summary() + (f"; {waiting} events wait in the outbox" if waiting else ""))
