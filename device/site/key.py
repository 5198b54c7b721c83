"""The site's keys: the secret every door shares, and the signer of deployed models.

Made once by ``peephole site init`` and copied into each door's 0600 config
(``[site] key``, or ``$PEEPHOLE_SITE_KEY``). Two keys are derived from it with
HKDF-SHA256: one seals replicated gallery records (AES-256-GCM, the record's
topic as associated data, so a sealed record cannot be passed off under another
topic), the other names them (HMAC-SHA256 of the person's name key). So the
broker, and anyone reading it, sees neither names nor faces, and cannot forge
or alter a record without the key.

Models are signed apart from that (Ed25519): the private signing key stays
with whoever deploys models (``peephole site init --signing-key FILE``), the
doors hold only its public half (``[site] model_signer``). A door taken from
the wall gives away the site key, but cannot push a model to the other doors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from device.config import SITE_KEY_BYTES, decode_key_text, decode_site_key
from device.errors import ConfigError, PeepholeError

_NONCE_BYTES = 12
# The first byte of every sealed record: how it was sealed.
_SEAL_VERSION = b"\x01"


class SealError(PeepholeError):
    """A sealed record did not open: tampered with, cut short, or sealed with another key."""


def _text(raw: bytes) -> str:
    """Key bytes as the unpadded URL-safe base64 the config holds."""
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


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
        return cls(secret), _text(secret)

    @classmethod
    def from_text(cls, text: str) -> SiteKey:
        """The key as ``peephole site init`` printed it (URL-safe base64)."""
        return cls(decode_site_key(text))

    def record_id(self, name_key: str) -> str:
        """The person's record name on the wire: the same on every door, and no name in it."""
        digest = hmac.new(self._naming, name_key.encode("utf-8"), hashlib.sha256)
        return digest.hexdigest()[:32]

    def pseudonym(self, name_key: str) -> str:
        """What events call the person where names stay off the broker: the same on every door."""
        return f"person-{self.record_id(name_key)[:12]}"

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


SIGNATURE_BYTES = 64


class ModelSigner:
    """The private Ed25519 key that signs the site's models."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_text = _text(private.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> tuple[ModelSigner, str]:
        """A new signer and its private key as text (for a 0600 file, never for a door)."""
        private = Ed25519PrivateKey.generate()
        return cls(private), _text(private.private_bytes_raw())

    @classmethod
    def from_file(cls, path: Path) -> ModelSigner:
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read signing key {path}: {error}") from None
        raw = decode_key_text(text, f"{path} is not a peephole signing key")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)


def verify_signature(public_text: str, data: bytes, signature: bytes) -> None:
    """SealError unless ``signature`` is the site signer's over ``data``."""
    public = Ed25519PublicKey.from_public_bytes(
        decode_key_text(public_text, "[site] model_signer is not a public signing key")
    )
    try:
        public.verify(signature, data)
    except InvalidSignature:
        raise SealError(
            "not signed by this site's model signer (unsigned, tampered with, "
            "or signed for another site)"
        ) from None
