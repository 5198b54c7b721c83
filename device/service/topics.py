"""The MQTT vocabulary of one door: its topics and the payloads subscribers match on.

Kept apart from discovery and events so the transport, the publisher and the
loop agree on names without loading each other.
"""

from __future__ import annotations

from dataclasses import dataclass

ONLINE = "online"
OFFLINE = "offline"
PRESENCE_ON = "ON"
PRESENCE_OFF = "OFF"
KNOWN_VISITOR = "known_visitor"
UNKNOWN_VISITOR = "unknown_visitor"
# Commands a household sends the door (docs/mqtt.md), each on <base>/command/<name>.
NAME_VISIT = "name_visit"
NAME_LAST_UNKNOWN = "name_last_unknown"
UNDO_NAMING = "undo_naming"
# What Home Assistant's button sends when pressed.
PRESS = "PRESS"


@dataclass(frozen=True)
class Topics:
    """Every topic of one device, under ``<prefix>/<device_id>``."""

    prefix: str
    device_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def presence(self) -> str:
        return f"{self.base}/presence"

    @property
    def snapshot(self) -> str:
        return f"{self.base}/snapshot"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    def event(self, name: str) -> str:
        return f"{self.base}/{name}"

    def command(self, name: str) -> str:
        """Where the household sends the door the command ``name``."""
        return f"{self.base}/command/{name}"

    @property
    def command_result(self) -> str:
        """Where the door says what came of each command."""
        return f"{self.base}/command_result"

    def last_seen(self, person_slug: str) -> str:
        """A person's last-seen time (retained), for Home Assistant's per-person sensor."""
        return f"{self.base}/person/{person_slug}/last_seen"


@dataclass(frozen=True)
class SiteTopics:
    """The topics a site's doors share, under ``<prefix>/site/<site_id>``.

    A person's record is named by its record id (derived from the site key),
    never by the person's name.
    """

    prefix: str
    site_id: str

    @property
    def people(self) -> str:
        """The filter that matches every person's record."""
        return f"{self.prefix}/site/{self.site_id}/people/+"

    def person(self, record_id: str) -> str:
        return f"{self.prefix}/site/{self.site_id}/people/{record_id}"

    @property
    def model(self) -> str:
        """The retained, signed model bundle every door of the site runs."""
        return f"{self.prefix}/site/{self.site_id}/model"
