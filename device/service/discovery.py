"""Home Assistant MQTT discovery: one retained device payload with all of the door's entities.

Device-based discovery: ``<discovery_prefix>/device/<node>/config`` carries the
device (``dev``), where it comes from (``o``), the availability every entity
shares and the entities themselves (``cmps``, each with its platform ``p``).
An entity left out of a later payload is removed by Home Assistant.

Entities: an ``event`` (``known_visitor``, ``unknown_visitor``); ``sensor``\\ s
of the last visitor's name and liveness verdict; a ``binary_sensor`` on while
someone is at the door; an ``image`` of the last visit's best face (with
snapshots on); diagnostic ``sensor``\\ s read from the retained health status
(frame rate with every status field as attributes, events waiting, people
enrolled); a ``button`` that undoes the last naming and a ``sensor`` saying
what came of the last command. Where names may go on the broker: a ``text``
that names the last unknown visitor, and one ``timestamp`` sensor per person,
when they were last seen.

Before 0.2 each entity had a topic of its own,
``<discovery_prefix>/<platform>/<node>/<object>/config``. The component ids
here are those object ids and the unique ids are unchanged, so Home Assistant
moves each entity over with its history (:func:`legacy_topics`, and the
migration in device/service/mqtt.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from device.identity.gallery import name_key
from device.service.topics import (
    KNOWN_VISITOR,
    NAME_LAST_UNKNOWN,
    OFFLINE,
    ONLINE,
    PRESENCE_OFF,
    PRESENCE_ON,
    PRESS,
    UNDO_NAMING,
    UNKNOWN_VISITOR,
    Topics,
)

# The per-entity topics the door published before device-based discovery: (platform, object id).
LEGACY_ENTITIES = (
    ("event", "visitor"),
    ("sensor", "last_visitor"),
    ("sensor", "last_visitor_liveness"),
    ("binary_sensor", "at_door"),
    ("sensor", "fps"),
    ("sensor", "outbox_backlog"),
    ("image", "snapshot"),
)
# Home Assistant's text entity keeps at most 255 characters; a name is far shorter.
NAME_MAX_LENGTH = 64


def node_id(device_id: str) -> str:
    """A discovery node id: only the characters Home Assistant accepts there."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", device_id)


def peephole_version() -> str:
    try:
        return metadata.version("peephole")
    except metadata.PackageNotFoundError:
        return "unknown"


def support_url() -> str | None:
    """The project's home page as the installed package declares it, if it declares one."""
    try:
        meta = metadata.metadata("peephole")
    except metadata.PackageNotFoundError:
        return None
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("homepage", "documentation", "source"):
            return str(url).strip()
    home = meta.get_all("Home-page") or []
    return str(home[0]) if home else None


def person_slug(name: str) -> str:
    """A name as topic and component ids can carry it: readable where it is ASCII, and a
    digest of the whole so that two names never share one (``Zoë`` and ``Zoe`` differ, ``anna`` and ``Anna`` are one person)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    readable = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")[:24]
    digest = hashlib.sha256(name_key(name).encode()).hexdigest()[:8]
    return f"{readable}_{digest}" if readable else digest


def discovery_topic(discovery_prefix: str, device_id: str) -> str:
    return f"{discovery_prefix}/device/{node_id(device_id)}/config"


def legacy_topics(discovery_prefix: str, device_id: str) -> list[str]:
    """Where the per-entity configs of earlier versions were retained."""
    node = node_id(device_id)
    return [f"{discovery_prefix}/{p}/{node}/{o}/config" for p, o in LEGACY_ENTITIES]


@dataclass(frozen=True)
class DiscoveryOptions:
    """What the door offers Home Assistant besides its fixed entities.

    ``people`` are the enrolled names (each gets a last-seen sensor); they and
    the naming ``text`` appear only with ``names_on_broker``. ``commands``
    offers the naming text and the undo button at all.
    """

    snapshots: bool = False
    commands: bool = True
    names_on_broker: bool = True
    people: tuple[str, ...] = ()


def device_discovery(
    topics: Topics, discovery_prefix: str, options: DiscoveryOptions
) -> tuple[str, str]:
    """(topic, JSON payload) of the door's retained device discovery config."""
    node = node_id(topics.device_id)
    version = peephole_version()
    origin: dict[str, str] = {"name": "peephole", "sw_version": version}
    if url := support_url():
        origin["support_url"] = url
    components = {
        object_id: {
            "p": platform,
            **entity,
            "unique_id": f"peephole_{node}_{object_id}",
            "default_entity_id": f"{platform}.peephole_{node}_{object_id}",
        }
        for object_id, (platform, entity) in _components(topics, options).items()
    }
    payload: dict[str, Any] = {
        "dev": {
            "ids": [f"peephole_{node}"],
            "name": f"Peephole {topics.device_id}",
            "mf": "peephole",
            "mdl": "door peephole camera",
            "sw": version,
        },
        "o": origin,
        "availability": [
            {
                "topic": topics.availability,
                "payload_available": ONLINE,
                "payload_not_available": OFFLINE,
            }
        ],
        "cmps": components,
    }
    return discovery_topic(discovery_prefix, topics.device_id), json.dumps(
        payload, separators=(",", ":"), ensure_ascii=False
    )


def _components(topics: Topics, options: DiscoveryOptions) -> dict[str, tuple[str, dict[str, Any]]]:
    visitor = topics.event("visitor")
    found: dict[str, tuple[str, dict[str, Any]]] = {
        "visitor": (
            "event",
            {
                "name": "Visitor",
                "state_topic": visitor,
                "event_types": [KNOWN_VISITOR, UNKNOWN_VISITOR],
                "icon": "mdi:door",
            },
        ),
        "last_visitor": (
            "sensor",
            {
                "name": "Last visitor",
                "state_topic": visitor,
                "value_template": "{{ value_json.person if value_json.known else 'unknown' }}",
                "icon": "mdi:account-question",
            },
        ),
        "last_visitor_liveness": (
            "sensor",
            {
                "name": "Last visitor liveness",
                "state_topic": visitor,
                "value_template": "{{ value_json.liveness or 'unknown' }}",
                "icon": "mdi:face-recognition",
            },
        ),
        "at_door": (
            "binary_sensor",
            {
                "name": "Someone at the door",
                "state_topic": topics.presence,
                "payload_on": PRESENCE_ON,
                "payload_off": PRESENCE_OFF,
                "device_class": "occupancy",
            },
        ),
        "fps": (
            "sensor",
            {
                "name": "Frame rate",
                "state_topic": topics.status,
                "value_template": "{{ value_json.fps }}",
                "json_attributes_topic": topics.status,
                "unit_of_measurement": "fps",
                "state_class": "measurement",
                "entity_category": "diagnostic",
                "icon": "mdi:speedometer",
            },
        ),
        "outbox_backlog": (
            "sensor",
            {
                "name": "Events waiting",
                "state_topic": topics.status,
                "value_template": "{{ value_json.outbox_backlog }}",
                "state_class": "measurement",
                "entity_category": "diagnostic",
                "icon": "mdi:tray-full",
            },
        ),
        "people_enrolled": (
            "sensor",
            {
                "name": "People enrolled",
                "state_topic": topics.status,
                "value_template": "{{ value_json.people }}",
                "state_class": "measurement",
                "entity_category": "diagnostic",
                "icon": "mdi:account-group",
            },
        ),
    }
    if options.snapshots:
        found["snapshot"] = (
            "image",
            {
                "name": "Last visitor snapshot",
                "image_topic": topics.snapshot,
                "content_type": "image/jpeg",
            },
        )
    if options.commands:
        found["undo_naming"] = (
            "button",
            {
                "name": "Undo the last naming",
                "command_topic": topics.command(UNDO_NAMING),
                "payload_press": PRESS,
                "icon": "mdi:undo",
            },
        )
        found["last_command"] = (
            "sensor",
            {
                "name": "Last naming result",
                "state_topic": topics.command_result,
                "value_template": "{{ value_json.message[:255] }}",
                "json_attributes_topic": topics.command_result,
                "icon": "mdi:account-edit",
            },
        )
    if options.commands and options.names_on_broker:
        found["name_last_unknown"] = (
            "text",
            {
                "name": "Name the last unknown visitor",
                "command_topic": topics.command(NAME_LAST_UNKNOWN),
                "min": 1,
                "max": NAME_MAX_LENGTH,
                "mode": "text",
                "icon": "mdi:account-plus",
            },
        )
    if options.names_on_broker:
        for name in options.people:
            slug = person_slug(name)
            found[f"last_seen_{slug}"] = (
                "sensor",
                {
                    "name": f"{name} last seen",
                    "state_topic": topics.last_seen(slug),
                    "device_class": "timestamp",
                    "icon": "mdi:account-clock",
                },
            )
    return found
