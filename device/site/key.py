"""The site key: one secret shared by every door of a household.

Made once by ``peephole site init`` and copied into each door's 0600 config
(``[site] key``, or ``$PEEPHOLE_SITE_KEY``). Two keys are derived from it with
HKDF-SHA256: one seals replicated gallery records (AES-256-GCM, the record's
topic as associated data, so a sealed record cannot be passed off under another
topic), the other names them (HMAC-SHA256 of the person's name key). So the
broker, and anyone reading it, sees neither names nor faces, and cannot forge
or alter a record without the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from device.config import SITE_KEY_BYTES, decode_site_key
from device.errors import ConfigError, PeepholeError

_NONCE_BYTES = 12
# The first byte of every sealed record: how it was sealed.
_SEAL_VERSION = b"\x01"


class SealError(PeepholeError):
    """A sealed record did not open: tampered with, cut short, or sealed with another key."""


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


class SiteKey:
    """The household's shared secret and what is derived from it."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != SITE_KEY_BYTES:
            raise ConfigError(f"a site key is {SITE_KEY_BYTES} bytes, not {len(secret)}")
        self._aead = AESGCM(_derive(secret, b"peephole site records: seal"))
        self._naming = _derive(secret, b"peephole site records: name")
        self.fingerprint = _derive(secret, b"peephole site key: fingerprint")[:6].hex()

    @classmethod
    def generate(cls) -> tuple[SiteKey, str]:
        """A new random key, and its text form to put in each door's config."""
        secret = os.urandom(SITE_KEY_BYTES)
        return cls(secret), base64.urlsafe_b64encode(secret).decode("ascii").rstrip("=")

    @classmethod
    def from_text(cls, text: str) -> SiteKey:
        """The key as ``peephole site init`` printed it (URL-safe base64)."""
        return cls(decode_site_key(text))

    def record_id(self, name_key: str) -> str:
        """The person's record name on the wire: the same on every door, and no name in it."""
        digest = hmac.new(self._naming, name_key.encode("utf-8"), hashlib.sha256)
        return digest.hexdigest()[:32]

    def seal(self, plaintext: bytes, topic: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, topic.encode("utf-8"))
        return _SEAL_VERSION + nonce + sealed

    def open(self, blob: bytes, topic: str) -> bytes:
        """The plaintext of a record sealed for ``topic``; SealError if it does not verify."""
        if len(blob) < 1 + _NONCE_BYTES + 16 or blob[:1] != _SEAL_VERSION:
            raise SealError(f"record on {topic} is not a sealed site record")
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, sealed, topic.encode("utf-8"))
        except InvalidTag:
            raise SealError(
                f"record on {topic} does not verify with this door's site key "
                "(tampered with, or sealed with another site's key)"
            ) from None
