"""peephole's configuration: one TOML file, validated at load, every option defaulted.

Secrets never need to be in the file: ``PEEPHOLE_MQTT_USERNAME`` and
``PEEPHOLE_MQTT_PASSWORD`` override the ``[mqtt]`` credentials, and
``PEEPHOLE_SITE_KEY`` the ``[site]`` key.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import math
import os
import socket
import stat
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from device.errors import ConfigError

logger = logging.getLogger(__name__)

# Characters MQTT topic names must not contain (wildcards and NUL).
_FORBIDDEN_TOPIC_CHARACTERS = set("+#\0")


Number = TypeVar("Number", int, float, None)


def ranged(default: Number, low: float, high: float) -> Number:
    """A numeric option's default and the range (inclusive) a config file may set it in."""
    return field(default=default, metadata={"range": (low, high)})


@dataclass
class Section:
    """A config section: every number within its declared range, then the section's own
    rules between options (``check``)."""

    name: ClassVar[str]

    def validate(self) -> None:
        for option in dataclasses.fields(self):
            _check_range(getattr(self, option.name), option, f"[{self.name}] {option.name}")
        self.check()

    def check(self) -> None:
        """Rules that tie options together; none unless a section has some."""


def _default_state_dir() -> Path:
    # systemd's StateDirectory= sets $STATE_DIRECTORY; elsewhere use XDG's data home.
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0])
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "peephole"


@dataclass
class CameraConfig(Section):
    """Where frames come from: "picamera2", a USB index ("0"), a URL, a video file or a folder."""

    name: ClassVar[str] = "camera"

    source: str = "0"
    width: int = ranged(1280, 16, 8192)
    height: int = ranged(720, 16, 8192)
    fps: float = ranged(15.0, 0.1, 240.0)
    # Pace video files and image folders to their frame rate (cameras always are).
    realtime: bool = False
    # A camera or stream that fails is reopened after this many seconds, doubling
    # up to backoff_max; it counts as failed after this many reads without a frame.
    backoff_initial: float = ranged(0.5, 0.01, 3600.0)
    backoff_max: float = ranged(10.0, 0.01, 3600.0)
    read_failures_before_reopen: int = ranged(5, 1, 10_000)


@dataclass
class DetectorConfig(Section):
    """BlazeFace variant, and which landmarks align the face.

    ``landmarks = "mesh"`` (default) runs MediaPipe's face mesh for the five
    ArcFace points (eye centres, nose tip, mouth corners): on LFW with the
    reference model it lifted 10-fold accuracy from 99.12% to 99.42% for about
    2 ms more per face. ``"blazeface"`` aligns on the detector's eyes, nose tip
    and mouth centre (4 points) and skips that model.
    """

    name: ClassVar[str] = "detector"

    variant: str = "short"
    min_score: float = ranged(0.5, 0.0, 1.0)
    num_threads: int = ranged(2, 1, 64)
    landmarks: str = "mesh"

    def check(self) -> None:
        if self.variant not in ("short", "full"):
            raise ConfigError(f"[detector] variant must be 'short' or 'full', not {self.variant!r}")
        if self.landmarks not in ("blazeface", "mesh"):
            raise ConfigError(
                f"[detector] landmarks must be 'blazeface' or 'mesh', not {self.landmarks!r}"
            )


@dataclass
class QualityConfig(Section):
    """The quality gate's thresholds (see device/vision/quality.py for each measure)."""

    name: ClassVar[str] = "quality"

    min_score: float = ranged(0.8, 0.0, 1.0)
    min_sharpness: float = ranged(40.0, 0.0, 100_000.0)
    min_eye_distance: float = ranged(20.0, 0.0, 10_000.0)
    max_roll: float = ranged(30.0, 0.0, 180.0)
    max_yaw: float = ranged(45.0, 0.0, 90.0)
    min_brightness: float = ranged(40.0, 0.0, 255.0)
    max_brightness: float = ranged(220.0, 0.0, 255.0)

    def check(self) -> None:
        if self.min_brightness >= self.max_brightness:
            raise ConfigError(
                f"[quality] min_brightness ({self.min_brightness:g}) must be below "
                f"max_brightness ({self.max_brightness:g})"
            )


@dataclass
class ModelConfig(Section):
    """The embedding model. An empty path means the default model shipped with peephole."""

    name: ClassVar[str] = "model"

    path: str = ""
    manifest: str = ""
    num_threads: int = ranged(2, 1, 64)
    # Override the manifest's calibrated identification threshold (cosine).
    threshold: float | None = ranged(None, -1.0, 1.0)
    # The best person must beat the runner-up by this much cosine.
    margin: float = ranged(0.05, 0.0, 2.0)
    # Where models deployed to the site are installed ("current" links the one in
    # use); empty: the state directory's models/ (firmware_scripts/deploy-model.sh's).
    deployed_dir: str = ""

    def resolved_deployed_dir(self) -> Path:
        return Path(self.deployed_dir) if self.deployed_dir else _default_state_dir() / "models"


@dataclass
class GalleryConfig(Section):
    name: ClassVar[str] = "gallery"

    path: str = ""
    # Keep each enrollment's aligned 112x112 crop so the gallery can be
    # re-embedded after a model change. Switch off to store embeddings only.
    store_crops: bool = True
    # Seconds between looks for changes other commands made to the gallery while
    # `peephole run` runs (a cheap check of SQLite's data_version).
    refresh_interval: float = ranged(1.0, 0.05, 3600.0)

    def resolved_path(self) -> Path:
        return Path(self.path) if self.path else _default_state_dir() / "gallery.db"


@dataclass
class EnrollConfig(Section):
    name: ClassVar[str] = "enroll"

    samples: int = ranged(10, 1, 1000)
    min_samples: int = ranged(3, 1, 1000)
    # A face at least this cosine-similar to a sample already taken is skipped.
    duplicate_similarity: float = ranged(0.95, -1.0, 1.0)

    def check(self) -> None:
        if self.min_samples > self.samples:
            raise ConfigError(
                f"[enroll] min_samples ({self.min_samples}) must not exceed samples ({self.samples})"
            )


def parse_host_port(value: str, where: str) -> tuple[str, int | None]:
    """``HOST[:PORT]`` (IPv6 as ``[::1]:1883``) into host and optional port."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host, port_text = value, ""
    if not host or any(c.isspace() or not c.isprintable() for c in host):
        raise ConfigError(f"{where} {value!r}: expected HOST[:PORT]")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{where} {value!r}: port must be 1-65535")
    return host, int(port_text)


@dataclass
class MqttConfig(Section):
    """Broker connection. No host (and no hosts) means no broker: events go to stdout and the outbox.

    ``hosts`` lists the brokers of a clustered or bridged site as ``HOST[:PORT]``
    (``port`` where an entry has none); the link moves to the next one when the
    current broker goes away or cannot be reached. ``host`` and ``port`` alone
    are the one-entry list.
    """

    name: ClassVar[str] = "mqtt"

    host: str = ""
    port: int = ranged(1883, 1, 65535)
    hosts: list[str] = field(default_factory=list)
    device_id: str = field(default_factory=lambda: socket.gethostname() or "peephole")
    topic_prefix: str = "peephole"
    username: str = ""
    password: str = ""
    keepalive: int = ranged(30, 5, 3600)
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    # Accept a broker whose certificate does not verify. Only for testing.
    tls_insecure: bool = False
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    snapshots: bool = False
    # Take naming commands from the broker (Home Assistant's text and button, scripts:
    # docs/mqtt.md). Whoever may write <topic_prefix>/<device_id>/command/# can name a
    # visitor: give only Home Assistant's user that right in the broker's ACL.
    commands: bool = True
    # Reconnect backoff, in seconds, doubling from min to max.
    reconnect_min_delay: int = ranged(1, 1, 3600)
    reconnect_max_delay: int = ranged(30, 1, 3600)
    # Seconds between retained status (health) messages; one is also sent at every connect.
    status_interval: float = ranged(30.0, 1.0, 86_400.0)

    def brokers(self) -> list[tuple[str, int]]:
        """(host, port) of every configured broker, in the order they are tried."""
        if self.hosts:
            return [self._entry(value) for value in self.hosts]
        return [(self.host, self.port)] if self.host else []

    def _entry(self, value: str) -> tuple[str, int]:
        host, port = parse_host_port(value, "[mqtt] hosts entry")
        return host, self.port if port is None else port

    def check(self) -> None:
        for name, value in (
            ("device_id", self.device_id),
            ("topic_prefix", self.topic_prefix),
            ("discovery_prefix", self.discovery_prefix),
        ):
            if not value or _FORBIDDEN_TOPIC_CHARACTERS & set(value):
                raise ConfigError(f"[mqtt] {name} must be non-empty without '+', '#' or NUL")
        if "/" in self.device_id:
            raise ConfigError("[mqtt] device_id must not contain '/'")
        if self.cert_file and not self.key_file:
            raise ConfigError("[mqtt] cert_file needs key_file")
        if self.hosts and self.host:
            raise ConfigError("[mqtt] set host or hosts, not both")
        self.brokers()  # every hosts entry parses, or a one-line error names it


@dataclass
class RuntimeConfig(Section):
    name: ClassVar[str] = "runtime"

    # Seconds during which a recognised person is not announced again.
    cooldown: float = ranged(60.0, 0.0, 86_400.0)
    # Frames a track may go unseen before the visitor counts as gone.
    max_missed_frames: int = ranged(15, 1, 10_000)
    # Frames of evidence a track needs before its identity is decided.
    min_frames: int = ranged(3, 1, 1000)
    # Frames after which an undecided track is published as unknown.
    max_frames: int = ranged(10, 1, 10_000)
    # Sightings before a face counts as a visitor (fewer: a passing false detection).
    min_hits: int = ranged(3, 1, 1000)
    # Sightings after which a face without enough good frames is announced as unknown.
    unknown_after_frames: int = ranged(30, 1, 100_000)
    # A visitor whose best similarity stays this far below the threshold over
    # min_frames good frames is announced as unknown at once, not after max_frames.
    unknown_margin: float = ranged(0.15, 0.0, 2.0)
    # Box overlap that links a face to the track of the previous frame.
    iou_threshold: float = ranged(0.3, 0.0, 1.0)
    # Centre distance, relative to the box size, that still links a face that moved fast.
    max_centre_distance: float = ranged(0.5, 0.0, 10.0)
    outbox_path: str = ""
    watchdog: bool = True
    # Where the running door writes its health report every few seconds for the web page
    # (`peephole web`); empty: status.json in $RUNTIME_DIRECTORY (systemd's /run/peephole,
    # a tmpfs: no SD card wear), else in the state directory.
    status_path: str = ""

    def resolved_outbox(self) -> Path:
        return Path(self.outbox_path) if self.outbox_path else _default_state_dir() / "outbox.db"

    def resolved_status(self) -> Path:
        if self.status_path:
            return Path(self.status_path)
        runtime = os.environ.get("RUNTIME_DIRECTORY")
        folder = Path(runtime.split(":")[0]) if runtime else _default_state_dir()
        return folder / "status.json"


@dataclass
class LivenessConfig(Section):
    """Liveness evidence per visit (device/vision/liveness.py); needs ``[detector] landmarks = "mesh"``.

    ``require = true`` announces a known person whose visit was not ``live``
    (a photo or screen held up, or a face that hardly moved) as unknown with
    ``reason = "liveness"``. ``frames`` is how many sightings a visit is
    watched before its verdict is final (sooner when it is live); the visitor
    event waits for it.
    """

    name: ClassVar[str] = "liveness"

    require: bool = False
    frames: int = ranged(30, 2, 1000)


@dataclass
class MotionConfig(Section):
    """The motion gate (device/vision/motion.py): while nobody is followed and nothing on
    the doorstep changed, a frame skips the detector.

    Each frame is shrunk to a grey frame ``width`` pixels wide (the camera's low-resolution
    stream where it has one), its brightness scaled to the background's (a cloud or the
    camera's exposure moves every pixel alike), and compared with a background that follows
    the scene at ``learning_rate`` per frame. A pixel changed when it differs from the
    background by more than ``noise_sigmas`` times its own running noise and at least
    ``min_difference`` grey levels; a ``cell`` x ``cell`` block changed when ``cell_share`` of
    its pixels did; the frame changed when ``min_cells`` blocks did. The detector runs anyway
    once ``safety_interval`` frames passed without it (2 s at 15 fps: a visitor waits
    longer at a door), so a face that arrived unseen by the gate is found within that
    many frames; at 2.4 ms a detection, that adds 0.08 ms to an empty frame's mean
    (docs/benchmarks.md). A frame the detector found empty becomes the background.
    """

    name: ClassVar[str] = "motion"

    enabled: bool = True
    width: int = ranged(64, 16, 640)
    noise_sigmas: float = ranged(4.0, 1.0, 100.0)
    min_difference: float = ranged(8.0, 0.0, 255.0)
    learning_rate: float = ranged(0.05, 0.001, 1.0)
    cell: int = ranged(4, 1, 64)
    cell_share: float = ranged(0.5, 0.01, 1.0)
    min_cells: int = ranged(1, 1, 100_000)
    safety_interval: int = ranged(30, 1, 100_000)


@dataclass
class TrackingConfig(Section):
    """Following a face without detecting it again (device/vision/follow.py).

    While a visitor is followed, the next frame's face region comes from the last frame's
    face mesh (as MediaPipe's face-mesh graph does); the detector runs again when the mesh's
    face presence falls below ``min_presence``, when the face moved more than ``max_shift``
    of its size from one frame to the next, and at least every ``detect_interval`` frames
    (which also finds a second face arriving). Needs ``[detector] landmarks = "mesh"``.
    """

    name: ClassVar[str] = "tracking"

    enabled: bool = True
    min_presence: float = ranged(0.9, 0.0, 1.0)
    max_shift: float = ranged(0.25, 0.0, 10.0)
    detect_interval: int = ranged(10, 1, 100_000)


@dataclass
class VisitsConfig(Section):
    """Visits kept on the door (device/identity/visits.py), so a household can see who came
    and name a visitor later: the decision, up to ``crops`` of the best aligned faces and one
    JPEG of the doorstep around the best one. Strangers' faces are kept too (docs/security.md
    says what and for how long); ``enabled = false`` keeps none.

    ``path`` empty: ``visits.db`` in the gallery's folder. Visits older than ``max_days``
    go, and the oldest go while all of them take more than ``max_megabytes`` (a visit
    takes about 60 KB). A visit's faces that were named stay in the gallery.
    """

    name: ClassVar[str] = "visits"

    enabled: bool = True
    path: str = ""
    max_days: float = ranged(30.0, 0.01, 36_500.0)
    max_megabytes: float = ranged(200.0, 0.1, 1_000_000.0)
    crops: int = ranged(4, 1, 10)
    context_quality: int = ranged(80, 10, 100)

    def resolved_path(self, gallery: Path) -> Path:
        return Path(self.path) if self.path else gallery.parent / "visits.db"


SITE_KEY_BYTES = 32


def decode_key_text(text: str, refusal: str) -> bytes:
    """32 key bytes from the URL-safe base64 ``peephole site init`` writes; ConfigError if not."""
    cleaned = text.strip()
    try:
        raw = base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != SITE_KEY_BYTES:
        raise ConfigError(refusal)
    return raw


def decode_site_key(text: str) -> bytes:
    """The 32 secret bytes of a site key."""
    return decode_key_text(
        text, "[site] key is not a site key (make one with 'peephole site init')"
    )


@dataclass
class SiteConfig(Section):
    """Doors with the same ``id`` and ``key`` share one gallery over their broker (docs/site.md).

    ``key`` is the secret ``peephole site init`` made; it seals every record on
    the broker. Keep it in this 0600 file or in ``$PEEPHOLE_SITE_KEY``. An ``id``
    without a key leaves this door on its own gallery (with a warning).
    ``model_signer`` is the public key of whoever deploys the site's models
    (``peephole site deploy-model``); without it the door takes no model from
    the site. ``names_on_broker = false`` keeps names off the broker
    altogether: visitor events call a person by a pseudonym derived from the
    site key (``peephole people list`` shows each one).
    """

    name: ClassVar[str] = "site"

    id: str = ""
    key: str = ""
    model_signer: str = ""
    names_on_broker: bool = True

    def check(self) -> None:
        if self.id and (_FORBIDDEN_TOPIC_CHARACTERS | {"/"}) & set(self.id):
            raise ConfigError("[site] id must not contain '/', '+', '#' or NUL")
        if self.key and not self.id:
            raise ConfigError("[site] key needs an id (the name of the site)")
        if self.key:
            decode_site_key(self.key)
        if not self.names_on_broker and not self.key:
            raise ConfigError("[site] names_on_broker = false needs the site's id and key")
        if self.model_signer:
            if not self.key:
                raise ConfigError("[site] model_signer needs the site's id and key")
            decode_key_text(self.model_signer, "[site] model_signer is not a public signing key")


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass
class WebConfig(Section):
    """The door's web page (``peephole web``, docs/web.md): visits, people and health.

    It listens on ``host`` (loopback by default: only this machine). Any other
    address needs a password, set with ``peephole web set-password`` and kept
    only as a slow hash in ``password_file`` (empty: ``web-password`` in the
    state directory); without one the page refuses to start. ``tls_cert`` and
    ``tls_key`` serve HTTPS directly (else put it behind a reverse proxy that
    does, docs/web.md). Uploads are refused above ``max_upload_bytes`` or
    ``max_upload_pixels`` (read from the image's header, before decoding). Namings and
    photos run the face models in a child process that ends ``model_idle_seconds``
    after its last call, so the page's own process stays small.
    """

    name: ClassVar[str] = "web"

    host: str = "127.0.0.1"
    port: int = ranged(8080, 1, 65535)
    password_file: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    max_upload_bytes: int = ranged(8 * 1024 * 1024, 1024, 64 * 1024 * 1024)
    max_upload_pixels: int = ranged(24_000_000, 10_000, 40_000_000)
    # Hours a login lasts (the session ends sooner when the page process restarts).
    session_hours: float = ranged(12.0, 0.01, 24.0 * 365)
    # Failed logins allowed per client address within login_window seconds.
    login_attempts: int = ranged(5, 1, 1000)
    login_window: float = ranged(300.0, 1.0, 86_400.0)
    # Seconds the face models' process (namings, photos) lives on after its last call.
    model_idle_seconds: float = ranged(120.0, 1.0, 86_400.0)

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    def resolved_password_file(self) -> Path:
        if self.password_file:
            return Path(self.password_file)
        return _default_state_dir() / "web-password"

    def check(self) -> None:
        if not self.host or any(c.isspace() or not c.isprintable() for c in self.host):
            raise ConfigError(f"[web] host {self.host!r} is not an address")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("[web] tls_cert and tls_key go together")


@dataclass
class Config:
    camera: CameraConfig = field(default_factory=CameraConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    enroll: EnrollConfig = field(default_factory=EnrollConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    visits: VisitsConfig = field(default_factory=VisitsConfig)
    site: SiteConfig = field(default_factory=SiteConfig)
    web: WebConfig = field(default_factory=WebConfig)


def default_config_path() -> Path:
    explicit = os.environ.get("PEEPHOLE_CONFIG")
    if explicit:
        return Path(explicit)
    system = Path("/etc/peephole/config.toml")
    if system.exists():
        return system
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "peephole" / "config.toml"


def load_config(path: str | Path | None = None, *, required: bool = False) -> Config:
    """Read and validate the configuration; a missing default file means all defaults."""
    config_path = Path(path) if path else default_config_path()
    if not config_path.exists():
        if required or path:
            raise ConfigError(f"config file not found: {config_path}")
        logger.debug(f"no config file at {config_path}: using the defaults")
        return apply_environment(Config())
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config {config_path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config {config_path} is not valid TOML: {error}") from None
    logger.debug(f"config from {config_path}")
    warn_if_exposed(config_path)
    return apply_environment(parse_config(raw, f"config {config_path}"))


def parse_config(raw: dict[str, Any], where: str = "config") -> Config:
    config = Config()
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for name, values in raw.items():
        if name not in sections:
            shown = name if name.isprintable() else repr(name)
            raise ConfigError(f"{where}: unknown section [{shown}] (known: {', '.join(sections)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: [{name}] must be a table")
        setattr(config, name, _build_section(getattr(config, name), values, f"{where} [{name}]"))
    try:
        for section in vars(config).values():
            section.validate()
        if config.camera.backoff_initial > config.camera.backoff_max:
            raise ConfigError("[camera] backoff_initial must not exceed backoff_max")
        if config.liveness.require and config.detector.landmarks != "mesh":
            raise ConfigError('[liveness] require = true needs [detector] landmarks = "mesh"')
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    return config


def _build_section(default: Any, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(type(default))
    fields = {f.name: f for f in dataclasses.fields(default)}
    updates = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"{where}: unknown option {key!r} (known: {', '.join(sorted(fields))})"
            )
        updates[key] = _coerce(value, hints[key], f"{where} {key}")
    return dataclasses.replace(default, **updates)


def _check_range(value: Any, option: dataclasses.Field[Any], where: str) -> None:
    if value is None or "range" not in option.metadata:
        return
    low, high = option.metadata["range"]
    if not low <= value <= high:
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        raise ConfigError(f"{where}: must be {low:g} to {high:g}, not {shown}")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    allowed = (
        typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    )
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if typing.get_origin(kind) is list and isinstance(value, list):
            (item,) = typing.get_args(kind)
            return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # TOML integers are unbounded: 1e400 written out in digits
                number = float("inf")
            if not math.isfinite(number):
                raise ConfigError(f"{where}: must be a finite number")
            return number
        if kind is str and isinstance(value, str):
            return value
    names = " or ".join(getattr(k, "__name__", str(k)) for k in allowed if k is not type(None))
    raise ConfigError(f"{where}: expected {names}, got {type(value).__name__} {value!r}")


def apply_environment(config: Config) -> Config:
    username = os.environ.get("PEEPHOLE_MQTT_USERNAME")
    password = os.environ.get("PEEPHOLE_MQTT_PASSWORD")
    if username is not None:
        config.mqtt.username = username
    if password is not None:
        config.mqtt.password = password
    site_key = os.environ.get("PEEPHOLE_SITE_KEY")
    if site_key is not None:
        config.site.key = site_key
        config.site.validate()
    return config


def warn_if_exposed(path: Path) -> None:
    """A config that may hold secrets must not be readable by other users."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )
