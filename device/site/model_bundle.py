"""A model deployed to a site: the .tflite file and its manifest, signed as one bundle.

Layout: ``peephole-model-bundle/1`` and a newline, a 4-byte big-endian header
length, the JSON header (site, file name, sha256 and size of both parts,
deployment time), the model bytes, the manifest bytes, then the Ed25519
signature of everything before it. The signature is checked before anything
else is read, so a bundle that is unsigned, altered or signed by another
signer is refused without parsing it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from device.errors import PeepholeError
from device.site.key import SIGNATURE_BYTES, ModelSigner, SealError, verify_signature

MAGIC = b"peephole-model-bundle/1\n"


class BundleError(PeepholeError):
    """A deployed model was refused: the door keeps the model it runs."""


@dataclass(frozen=True)
class ModelBundle:
    site: str
    file_name: str
    model: bytes
    manifest: bytes
    deployed: float

    @property
    def model_sha256(self) -> str:
        return hashlib.sha256(self.model).hexdigest()


def pack_bundle(bundle: ModelBundle, signer: ModelSigner) -> bytes:
    header = json.dumps(
        {
            "site": bundle.site,
            "file_name": bundle.file_name,
            "model_sha256": bundle.model_sha256,
            "model_size": len(bundle.model),
            "manifest_sha256": hashlib.sha256(bundle.manifest).hexdigest(),
            "manifest_size": len(bundle.manifest),
            "deployed": bundle.deployed,
        }
    ).encode("utf-8")
    body = MAGIC + len(header).to_bytes(4, "big") + header + bundle.model + bundle.manifest
    return body + signer.sign(body)


def unpack_bundle(data: bytes, signer_public: str, site: str) -> ModelBundle:
    """The verified bundle for ``site``; BundleError if it is not one."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4 + SIGNATURE_BYTES:
        raise BundleError("deployed model refused: not a peephole model bundle")
    body, signature = data[:-SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]
    try:
        verify_signature(signer_public, body, signature)
    except SealError as error:
        raise BundleError(f"deployed model refused: {error}") from None
    start = len(MAGIC) + 4
    length = int.from_bytes(body[len(MAGIC) : start], "big")
    try:
        header = json.loads(body[start : start + length])
        model_size, manifest_size = int(header["model_size"]), int(header["manifest_size"])
        model = body[start + length : start + length + model_size]
        manifest = body[start + length + model_size :]
        bundle = ModelBundle(
            site=str(header["site"]),
            file_name=str(header["file_name"]),
            model=model,
            manifest=manifest,
            deployed=float(header["deployed"]),
        )
        sizes_match = len(model) == model_size and len(manifest) == manifest_size
        sums_match = (
            bundle.model_sha256 == header["model_sha256"]
            and hashlib.sha256(manifest).hexdigest() == header["manifest_sha256"]
        )
    except (KeyError, TypeError, ValueError) as error:
        raise BundleError(f"deployed model refused: damaged header ({error!r})") from None
    if not (sizes_match and sums_match):
        raise BundleError("deployed model refused: its parts do not match their sums")
    if bundle.site != site:
        raise BundleError(
            f"deployed model refused: it was deployed to site {bundle.site!r}, not {site!r}"
        )
    return bundle
