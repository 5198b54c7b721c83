"""Model rollout: a signed model deployed to the site, taken up by this door while it runs.

``peephole site deploy-model`` publishes one retained bundle (device/site/
model_bundle.py) on ``<prefix>/site/<id>/model``. The door checks the
signature against ``[site] model_signer`` and the site, stores the model and
checks that it loads and matches its manifest (device/site/model_store.py),
embeds every stored crop of the gallery with it, and only then switches
``current`` and hands the new embedder to the loop. Whatever fails on the way
leaves the door on the model it runs, says why once, and names the refusal in
the health report (``model_refused``).
"""

from __future__ import annotations

import logging
import queue
from pathlib import Path

from device.errors import PeepholeError
from device.identity.enroll import embed_missing_crops
from device.identity.gallery import Gallery
from device.service.mqtt import MqttLink
from device.service.topics import SiteTopics
from device.site.model_bundle import unpack_bundle
from device.site.model_store import install_model, switch_current
from device.vision.embedder import FaceEmbedder

logger = logging.getLogger(__name__)


class ModelRollout:
    def __init__(
        self,
        *,
        topics: SiteTopics,
        signer_public: str,
        link: MqttLink,
        gallery: Gallery,
        models_dir: Path,
        num_threads: int,
    ) -> None:
        self.topics = topics
        self.signer_public = signer_public
        self.gallery = gallery
        self.models_dir = models_dir
        self.num_threads = num_threads
        self.refused = ""
        self._arrived: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._seen: set[bytes] = set()
        link.subscribe(topics.model, lambda _topic, payload: self._arrived.put(payload))

    def step(self, running_sha256: str) -> FaceEmbedder | None:
        """The embedder of a newly deployed model, installed and switched to; else None."""
        latest = None
        while not self._arrived.empty():
            latest = self._arrived.get_nowait()
        if not latest:
            return None
        fingerprint = latest[-64:]
        if fingerprint in self._seen:
            return None  # the retained bundle again, after a reconnect
        self._seen.add(fingerprint)
        try:
            bundle = unpack_bundle(latest, self.signer_public, self.topics.site_id)
            if bundle.model_sha256 == running_sha256:
                return None
            embedder = install_model(bundle, self.models_dir, self.num_threads)
            embedded = embed_missing_crops(self.gallery, embedder)
            switch_current(self.models_dir, bundle.model_sha256)
        except PeepholeError as error:
            self.refused = str(error)
            logger.warning(f"{error}; staying on the current model")
            return None
        self.refused = ""
        logger.info(
            f"switched to deployed model {bundle.file_name} "
            f"(embedding key {embedder.embedding_key[:12]}); {embedded} crop(s) embedded with it"
        )
        return embedder
