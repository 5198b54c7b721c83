"""One person's replicated record: what travels, sealed, on the site's retained topics.

A record holds what the gallery keeps about one person that cannot be made
again: the name, the aligned crops, and embeddings that have no crop (enrolled
with ``[gallery] store_crops = false``). Embeddings of a crop are left out:
each door embeds the crops with the model it runs, so doors on different
models (a rollout half-way) agree, and a model change sends nothing. The
record is stamped by the hybrid logical clock. A removal is a record too (a
tombstone, no person), kept on the broker like any other, so a door that was
away when someone was removed still learns of it. The record is always the person's whole state: the later stamp
wins, and no merge is ever needed.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from dataclasses import dataclass, replace

from device.errors import PeepholeError
from device.identity.export_format import ExportedPerson, person_from_json, person_to_json
from device.site.clock import Stamp

RECORD_FORMAT = "peephole-site-record/1"


class RecordError(PeepholeError):
    """A record opened with the site key but is not a record this peephole understands."""


@dataclass(frozen=True)
class PersonRecord:
    record_id: str
    stamp: Stamp
    # None: the person was removed (a tombstone).
    person: ExportedPerson | None

    @property
    def removed(self) -> bool:
        return self.person is None


def encode_record(record: PersonRecord) -> bytes:
    document = {
        "format": RECORD_FORMAT,
        "record": record.record_id,
        "stamp": record.stamp.to_text(),
        "person": None if record.person is None else person_to_json(record.person),
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_record(data: bytes, record_id: str) -> PersonRecord:
    """The record of ``record_id`` (its topic's last level); RecordError if it is not one."""
    try:
        document = json.loads(data)
        if document["format"] != RECORD_FORMAT:
            raise RecordError(f"record {record_id} has format {document['format']!r}")
        if document["record"] != record_id:
            raise RecordError(f"record {record_id} says it is record {document['record']!r}")
        person = document["person"]
        return PersonRecord(
            record_id=record_id,
            stamp=Stamp.from_text(document["stamp"]),
            person=None if person is None else person_from_json(person),
        )
    except RecordError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, binascii.Error, PeepholeError) as error:
        raise RecordError(f"record {record_id} is damaged: {error!r}") from None


def replicable(person: ExportedPerson) -> ExportedPerson:
    """The part of a stored person that travels: all but the embeddings made from crops."""
    return replace(person, embeddings=tuple(e for e in person.embeddings if e.crop is None))


def person_digest(person: ExportedPerson) -> str:
    """What a change to a person changes: the name, the crops and the embeddings.

    Not the times: ``last_seen`` moves at every visit and is no reason to
    replicate. Two doors holding the same person compute the same digest of
    ``replicable(person)``.
    """
    name = person.name.encode("utf-8")
    content = hashlib.sha256(f"{len(name)}:".encode() + name)
    for crop in person.crops:
        content.update(hashlib.sha256(crop.png).digest())
        content.update(f"{crop.quality}|{crop.source}".encode())
    for embedding in person.embeddings:
        content.update(f"{embedding.crop}|{embedding.embedding_key}|".encode())
        content.update(hashlib.sha256(embedding.vector).digest())
        content.update(f"{embedding.quality}|{embedding.source}".encode())
    return content.hexdigest()
