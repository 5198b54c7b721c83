"""Starting the page: the checks that keep it safe, then uvicorn (the only importer of it)."""

from __future__ import annotations

import logging

import uvicorn

from device.config import Config
from device.errors import ConfigError
from device.site.model_choice import ModelChoice
from device.web.app import create_app
from device.web.model_worker import ModelWorker, OffloadedHousehold
from device.web.passwords import load_password

logger = logging.getLogger(__name__)


def check_safe(config: Config) -> None:
    """Refuse, in one line, what would expose the door: another address without a password."""
    web = config.web
    password = load_password(web.resolved_password_file())
    if not web.loopback and password is None:
        raise ConfigError(
            f"[web] host {web.host} is reachable from other machines: set a password first "
            "with 'peephole web set-password'"
        )


def serve(config: Config, models: ModelChoice) -> None:
    """Serve the page until SIGTERM or Ctrl-C."""
    check_safe(config)
    web = config.web
    worker = ModelWorker(models, web.model_idle_seconds)
    app = create_app(config, OffloadedHousehold(worker), on_shutdown=worker.stop)
    scheme = "https" if web.tls else "http"
    host = f"[{web.host}]" if ":" in web.host else web.host
    logger.info(f"web page at {scheme}://{host}:{web.port}/")
    if web.loopback and not web.resolved_password_file().exists():
        logger.warning("no password set: anyone on this machine can open the page")
    uvicorn.run(
        app,
        host=web.host,
        port=web.port,
        ssl_certfile=web.tls_cert or None,
        ssl_keyfile=web.tls_key or None,
        log_config=None,  # peephole's own logging, one handler
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )
