"""The page's password: kept only as a slow scrypt hash, in a file of mode 0600."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from device.errors import PeepholeError
from device.service.health import write_private

# scrypt's cost: about 50 ms and 16 MiB per try, so a stolen hash is slow to guess.
_N, _R, _P = 2**14, 8, 1
_SCHEME = "scrypt"
MIN_LENGTH = 8


class PasswordError(PeepholeError):
    """The password file is unreadable or malformed, or a new password is unusable."""


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def make(cls, password: str) -> PasswordHash:
        if len(password) < MIN_LENGTH:
            raise PasswordError(f"the password must have at least {MIN_LENGTH} characters")
        salt = secrets.token_bytes(16)
        return cls(_N, _R, _P, salt, _derive(password, salt, _N, _R, _P))

    def matches(self, password: str) -> bool:
        tried = _derive(password, self.salt, self.n, self.r, self.p)
        return hmac.compare_digest(tried, self.digest)

    def to_text(self) -> str:
        return f"{_SCHEME}${self.n}${self.r}${self.p}${_b64(self.salt)}${_b64(self.digest)}\n"

    @classmethod
    def from_text(cls, text: str, where: Path) -> PasswordHash:
        parts = text.strip().split("$")
        try:
            scheme, n, r, p, salt, digest = parts
            if scheme != _SCHEME:
                raise ValueError(scheme)
            return cls(int(n), int(r), int(p), _unb64(salt), _unb64(digest))
        except ValueError:
            raise PasswordError(
                f"{where} is not a peephole password file (set one with 'peephole web set-password')"
            ) from None


def store_password(path: Path, password: str) -> None:
    """Replace the password at ``path`` with a hash of ``password`` (mode 0600)."""
    write_private(path, PasswordHash.make(password).to_text())


def load_password(path: Path) -> PasswordHash | None:
    """The stored hash; None when no password was set."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise PasswordError(f"cannot read the password file {path}: {error}") from None
    return PasswordHash.from_text(text, path)
