"""The household's side of Home Assistant: naming commands in, results and people out.

Commands arrive on ``<prefix>/<id>/command/<name>`` (docs/mqtt.md):

- ``name_visit``: JSON ``{"visit_id": ..., "name": ..., "append"?, "reassign"?,
  "allow_suspect"?}`` from scripts; naming a visit twice as the same person
  finds it done, so a retained or replayed command changes nothing twice;
- ``name_last_unknown``: a name as plain text, from Home Assistant's text
  entity: the newest unknown visit that kept a face is named (added to the
  person when the name is enrolled already);
- ``undo_naming``: ``PRESS`` from the button undoes the last naming;
  ``{"visit_id": ...}`` undoes it only if it is that visit's.

The last two act on "the last" of something, so the link drops their
retained messages: they act only as they are sent. paho's thread only
queues a command; the camera loop calls :meth:`HouseholdOverMqtt.step`
between frames, which runs them one at a time through the household library
(the model is the loop's: a TFLite interpreter is not thread-safe), logs each
with its outcome and publishes a result on ``<prefix>/<id>/command_result``.

Where names stay off the broker (``[site] names_on_broker = false``) no
name is taken from it or sent to it: naming commands are refused, results
carry no name and no per-person entity is offered.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import time
from dataclasses import asdict, dataclass
from typing import Any

from device.errors import PeepholeError
from device.identity.gallery import PersonSummary
from device.identity.naming import NamingResult, UndoResult
from device.service.discovery import person_slug
from device.service.health import iso_time
from device.service.household import Household
from device.service.mqtt import MqttLink
from device.service.topics import NAME_LAST_UNKNOWN, NAME_VISIT, PRESS, UNDO_NAMING

logger = logging.getLogger(__name__)

NAMES_STAY_HOME = (
    "names stay off the broker on this site ([site] names_on_broker = false): "
    "name visitors at the door ('peephole visits name' or its web page)"
)


class CommandRefused(PeepholeError):
    """A command that cannot be run as sent (not JSON, a field missing)."""


@dataclass(frozen=True)
class CommandResult:
    """What came of one command, as published on the result topic."""

    command: str
    ok: bool
    changed: bool
    message: str
    visit_id: str | None = None
    person: str | None = None
    time: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)


class HouseholdOverMqtt:
    """Runs the household's commands from the broker and keeps Home Assistant's people current."""

    def __init__(self, household: Household, link: MqttLink, *, names_on_broker: bool) -> None:
        self.household = household
        self.link = link
        self.names_on_broker = names_on_broker
        self._commands: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        # Each person's last-seen time as last published: only changes are sent.
        self._published: dict[str, float | None] = {}
        topics = link.topics
        if link.settings.commands:
            link.subscribe(topics.command(NAME_VISIT), self._received)
            link.subscribe(topics.command(NAME_LAST_UNKNOWN), self._received, retained=False)
            link.subscribe(topics.command(UNDO_NAMING), self._received, retained=False)

    def _received(self, topic: str, payload: bytes) -> None:
        # paho's thread: hand over only.
        self._commands.put((topic.rsplit("/", 1)[-1], payload))

    def step(self) -> bool:
        """Run every command that arrived; True when one changed the gallery."""
        changed = False
        while True:
            try:
                command, payload = self._commands.get_nowait()
            except queue.Empty:
                return changed
            result = self._run(command, payload)
            (logger.info if result.ok else logger.warning)(
                f"command {command} from the broker: {result.message}"
            )
            self.link.publish_state(self.link.topics.command_result, result.to_json())
            changed = changed or result.changed

    def _run(self, command: str, payload: bytes) -> CommandResult:
        try:
            if command == UNDO_NAMING:
                return self._undo(payload)
            if not self.names_on_broker:
                raise CommandRefused(NAMES_STAY_HOME)
            if command == NAME_LAST_UNKNOWN:
                return self._name_last_unknown(payload)
            return self._name_visit(payload)
        except (PeepholeError, sqlite3.Error) as error:
            return self._result(command, False, False, str(error))

    def _name_visit(self, payload: bytes) -> CommandResult:
        fields = _json_object(payload, NAME_VISIT)
        visit_id = _text(fields, "visit_id", NAME_VISIT)
        flags = {key: fields.get(key) is True for key in ("append", "reassign", "allow_suspect")}
        result = self.household.name_visit(visit_id, _text(fields, "name", NAME_VISIT), **flags)
        return self._named(NAME_VISIT, result)

    def _name_last_unknown(self, payload: bytes) -> CommandResult:
        name = payload.decode("utf-8", errors="replace").strip()
        if not name:
            raise CommandRefused("no name was given")
        view = self.household.last_unknown_visit()
        if view is None:
            raise CommandRefused("no unknown visitor with a face to name has been seen")
        return self._named(
            NAME_LAST_UNKNOWN, self.household.name_visit(view.visit.id, name, append=True)
        )

    def _undo(self, payload: bytes) -> CommandResult:
        expect = None
        if payload.strip() != PRESS.encode():
            expect = _text(_json_object(payload, UNDO_NAMING), "visit_id", UNDO_NAMING)
        return self._undone(self.household.undo_last_naming(expect))

    def _named(self, command: str, result: NamingResult) -> CommandResult:
        return self._result(
            command, True, result.changed, result.summary(), result.visit_id, result.person
        )

    def _undone(self, result: UndoResult) -> CommandResult:
        if self.names_on_broker:
            message, person = result.summary(), result.restored_to or result.person
        else:
            message = f"undone: the naming of visit {result.visit_id} ({result.samples} sample(s))"
            person = None
        return self._result(UNDO_NAMING, True, True, message, result.visit_id, person)

    def _result(
        self,
        command: str,
        ok: bool,
        changed: bool,
        message: str,
        visit_id: str | None = None,
        person: str | None = None,
    ) -> CommandResult:
        return CommandResult(
            command=command,
            ok=ok,
            changed=changed,
            message=message,
            visit_id=visit_id,
            person=person if self.names_on_broker else None,
            time=iso_time(time.time()),
        )

    def publish_people(self) -> None:
        """Offer Home Assistant a last-seen sensor per person, and their times (retained)."""
        if not self.names_on_broker:
            return
        try:
            people = self.household.people()
        except (PeepholeError, sqlite3.Error) as error:
            logger.warning(f"cannot read the people for Home Assistant: {error}")
            return
        self.link.update_people(tuple(sorted((p.name for p in people), key=str.casefold)))
        self._publish_last_seen(people)

    def _publish_last_seen(self, people: list[PersonSummary]) -> None:
        current = {p.name: p.last_seen for p in people}
        for name in set(self._published) - set(current):
            self.link.publish_retained(self.link.topics.last_seen(person_slug(name)), "")
        for name, seen in current.items():
            if name not in self._published or self._published[name] != seen:
                text = iso_time(seen) if seen is not None else ""
                self.link.publish_retained(self.link.topics.last_seen(person_slug(name)), text)
        self._published = current


def _json_object(payload: bytes, command: str) -> dict[str, Any]:
    try:
        fields = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        fields = None
    if not isinstance(fields, dict):
        raise CommandRefused(f"a {command} command is a JSON object (docs/mqtt.md)")
    return fields


def _text(fields: dict[str, Any], key: str, command: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CommandRefused(f"a {command} command needs {key!r} (text)")
    return value.strip()
