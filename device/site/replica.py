"""This door's copy of the site's gallery: local changes out, remote records in.

Each door's gallery file holds, beside the people, one ``site_records`` row per
record id: the stamp of the latest change this door made or accepted, the
digest of the person as it then stood ("" after a removal), and whether the
broker has acknowledged the door's own change.

- Local changes are found by comparing the gallery with those rows, not by
  hooking every command: ``peephole enroll``, ``people rename`` or ``people
  remove`` (other processes, maybe while the service was stopped) change the
  gallery; the service stamps whatever differs and sends it.
- A remote record is applied when its stamp is later than the row's. The
  person is replaced, or removed, and the row updated in the same
  transaction, so the next comparison sees no local change. The crops it
  brought still need embedding with this door's model (the caller's job:
  ``embed_missing_crops``).
- A remote record older than the row means the broker holds a stale copy
  (a failover, a broker restored from backup): the row is marked unsent and
  this door's newer copy goes out again. So does a record that fails to open
  (tampered with on the broker): the doors that hold the person heal it.
"""

from __future__ import annotations

from dataclasses import dataclass

from device.identity import site_records
from device.identity.export_format import ExportedPerson
from device.identity.gallery import Gallery, name_key
from device.identity.site_records import SiteRecordRow
from device.site.clock import HybridClock, Stamp
from device.site.key import SiteKey
from device.site.records import PersonRecord, RecordError, person_digest, replicable


@dataclass(frozen=True)
class Applied:
    """What a remote record did here: ``change`` is "enrolled", "updated", "removed" or ""."""

    change: str
    # This door holds a later change than the record: it must send its own again.
    resend: bool = False


class SiteReplica:
    """The site's records as seen from one door's gallery. Not thread-safe, like the Gallery."""

    def __init__(self, gallery: Gallery, key: SiteKey, clock: HybridClock) -> None:
        self.gallery = gallery
        self.key = key
        self.clock = clock
        latest = site_records.latest_stamp(gallery.db)
        if latest:
            clock.observe(Stamp.from_text(latest))

    def stamp_local_changes(self) -> list[PersonRecord]:
        """Stamp every person added, changed or removed here since the last look."""
        changed = []
        with self.gallery.transaction():
            rows = self._rows()
            present = set()
            for stored in self.gallery.export_records():
                person = replicable(stored)
                record_id = self.key.record_id(name_key(person.name))
                present.add(record_id)
                row = rows.get(record_id)
                digest = person_digest(person)
                if row is None or row.removed or row.digest != digest:
                    record = PersonRecord(record_id, self.clock.tick(), person)
                    self._write_row(record, digest, published=False)
                    changed.append(record)
            for record_id, row in rows.items():
                if not row.removed and record_id not in present:
                    tombstone = PersonRecord(record_id, self.clock.tick(), None)
                    self._write_row(tombstone, "", published=False)
                    changed.append(tombstone)
        return changed

    def unsent(self) -> list[PersonRecord]:
        """This door's changes that the broker has not acknowledged yet, oldest first."""
        records = []
        pending = [(record_id, row) for record_id, row in self._rows().items() if not row.published]
        for record_id, row in sorted(pending, key=lambda item: Stamp.from_text(item[1].stamp)):
            person = None if row.removed else self._local_person(record_id)
            if person is None and not row.removed:
                continue  # removed since; the next stamp_local_changes sends the tombstone
            records.append(PersonRecord(record_id, Stamp.from_text(row.stamp), person))
        return records

    def mark_sent(self, record_id: str, stamp: Stamp) -> None:
        """The broker has this change (unless a later one was made meanwhile)."""
        with self.gallery.transaction():
            site_records.mark_published(self.gallery.db, record_id, stamp.to_text())

    def resend(self, record_id: str) -> bool:
        """Send this door's copy of a record again (the broker's copy was refused); False if none."""
        with self.gallery.transaction():
            row = self._rows(record_id).get(record_id)
            if row is None:
                return False
            site_records.mark_unsent(self.gallery.db, record_id)
        return True

    def apply(self, record: PersonRecord) -> Applied:
        """Take a record from the site if it is later than what this door holds."""
        self.clock.observe(record.stamp)
        with self.gallery.transaction():
            row = self._rows(record.record_id).get(record.record_id)
            held = None if row is None else Stamp.from_text(row.stamp)
            if held is not None and held >= record.stamp:
                stale = held > record.stamp
                if stale and row is not None and row.published:
                    site_records.mark_unsent(self.gallery.db, record.record_id)
                return Applied("", resend=stale)
            known = self._local_person(record.record_id)
            if record.person is None:
                if known is not None:
                    self.gallery.remove_person_by_key(name_key(known.name))
                self._write_row(record, "", published=True)
                return Applied("removed" if known is not None else "")
            self._check_record_id(record.record_id, record.person)
            self.gallery.replace_person(replicable(record.person))
            stored = self.gallery.export_records(name_key(record.person.name))
            self._write_row(record, person_digest(replicable(stored[0])), published=True)
            return Applied("updated" if known is not None else "enrolled")

    def _check_record_id(self, record_id: str, person: ExportedPerson) -> None:
        expected = self.key.record_id(name_key(person.name))
        if expected != record_id:
            # Sealed with our key yet under another person's record: refuse, or it would
            # overwrite the wrong person.
            raise RecordError(f"record {record_id} holds another person's record")

    def _local_person(self, record_id: str) -> ExportedPerson | None:
        for name in self.gallery.names():
            key = name_key(name)
            if self.key.record_id(key) == record_id:
                return replicable(self.gallery.export_records(key)[0])
        return None

    def _rows(self, only: str | None = None) -> dict[str, SiteRecordRow]:
        return site_records.read_rows(self.gallery.db, only)

    def _write_row(self, record: PersonRecord, digest: str, *, published: bool) -> None:
        row = SiteRecordRow(
            record.record_id, record.stamp.to_text(), digest, record.removed, published
        )
        site_records.write_row(self.gallery.db, row)
