"""Home Assistant MQTT discovery: one device with its entities, all tied to the availability topic.

Entities: an ``event`` (event types ``known_visitor`` and ``unknown_visitor``),
a ``sensor`` holding the last visitor's name (or ``unknown``), a ``sensor``
holding the last visit's liveness verdict (``live``, ``suspect``,
``undecided``; ``unknown`` without the face mesh) so an automation can
require ``live``, a
``binary_sensor`` that is on while someone is at the door, and an ``image``
showing the best face of the last visit when snapshots are on, and two
diagnostic ``sensor``s read from the retained health status (frame rate,
with every status field as attributes; events waiting in the outbox). Configs are
published retained to ``<discovery_prefix>/<component>/<node>/<object>/config``.
"""

from __future__ import annotations

import json
import re
from importlib import metadata
from typing import Any

from device.service.topics import (
    KNOWN_VISITOR,
    OFFLINE,
    ONLINE,
    PRESENCE_OFF,
    PRESENCE_ON,
    UNKNOWN_VISITOR,
    Topics,
)


def node_id(device_id: str) -> str:
    """A discovery node id: only the characters Home Assistant accepts there."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", device_id)


def peephole_version() -> str:
    try:
        return metadata.version("peephole")
    except metadata.PackageNotFoundError:
        return "unknown"


def discovery_messages(
    topics: Topics, discovery_prefix: str, snapshots: bool
) -> list[tuple[str, str]]:
    """(topic, JSON payload) for every entity; an empty payload removes a disabled entity."""
    node = node_id(topics.device_id)
    device = {
        "identifiers": [f"peephole_{node}"],
        "name": f"Peephole {topics.device_id}",
        "manufacturer": "peephole",
        "model": "door peephole camera",
        "sw_version": peephole_version(),
    }
    common: dict[str, Any] = {
        "device": device,
        "availability": [
            {
                "topic": topics.availability,
                "payload_available": ONLINE,
                "payload_not_available": OFFLINE,
            }
        ],
    }
    visitor = topics.event("visitor")
    entities: dict[tuple[str, str], dict[str, Any] | None] = {
        ("event", "visitor"): {
            "name": "Visitor",
            "state_topic": visitor,
            "event_types": [KNOWN_VISITOR, UNKNOWN_VISITOR],
            "icon": "mdi:door",
        },
        ("sensor", "last_visitor"): {
            "name": "Last visitor",
            "state_topic": visitor,
            "value_template": "{{ value_json.person if value_json.known else 'unknown' }}",
            "icon": "mdi:account-question",
        },
        ("sensor", "last_visitor_liveness"): {
            "name": "Last visitor liveness",
            "state_topic": visitor,
            "value_template": "{{ value_json.liveness or 'unknown' }}",
            "icon": "mdi:face-recognition",
        },
        ("binary_sensor", "at_door"): {
            "name": "Someone at the door",
            "state_topic": topics.presence,
            "payload_on": PRESENCE_ON,
            "payload_off": PRESENCE_OFF,
            "device_class": "occupancy",
        },
        ("sensor", "fps"): {
            "name": "Frame rate",
            "state_topic": topics.status,
            "value_template": "{{ value_json.fps }}",
            "json_attributes_topic": topics.status,
            "unit_of_measurement": "fps",
            "state_class": "measurement",
            "entity_category": "diagnostic",
            "icon": "mdi:speedometer",
        },
        ("sensor", "outbox_backlog"): {
            "name": "Events waiting",
            "state_topic": topics.status,
            "value_template": "{{ value_json.outbox_backlog }}",
            "state_class": "measurement",
            "entity_category": "diagnostic",
            "icon": "mdi:tray-full",
        },
        ("image", "snapshot"): (
            {
                "name": "Last visitor snapshot",
                "image_topic": topics.snapshot,
                "content_type": "image/jpeg",
            }
            if snapshots
            else None
        ),
    }
    messages = []
    for (component, object_id), entity in entities.items():
        topic = f"{discovery_prefix}/{component}/{node}/{object_id}/config"
        if entity is None:
            messages.append((topic, ""))
            continue
        config = {**entity, **common, "unique_id": f"peephole_{node}_{object_id}"}
        messages.append((topic, json.dumps(config, separators=(",", ":"))))
    return messages
