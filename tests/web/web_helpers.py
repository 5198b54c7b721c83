"""The web page as tests meet it: ``peephole web`` in a child process on a free port of
127.0.0.1, and a small HTTP client with a cookie jar (stdlib http.client: what goes over
the wire is exactly what the test wrote)."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import secrets
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.conftest import ROOT
from tests.runtime_helpers import child_environment

PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def web_config(folder: Path, port: int, extra: str = "") -> Path:
    """A config keeping every file of the door and its page in ``folder``."""
    config = folder / "config.toml"
    config.write_text(
        f'[gallery]\npath = "{folder / "gallery.db"}"\n'
        f'[runtime]\noutbox_path = "{folder / "outbox.db"}"\n'
        f'status_path = "{folder / "status.json"}"\n'
        f'[mqtt]\ndevice_id = "door"\n'
        f'[web]\nport = {port}\npassword_file = "{folder / "web-password"}"\n{extra}'
    )
    config.chmod(0o600)
    return config


def peephole(
    config: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device", "--config", str(config), *args],
        cwd=ROOT,
        env=child_environment(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def set_password(config: Path, password: str = PASSWORD) -> None:
    done = peephole(config, "web", "set-password", "--stdin", stdin=password + "\n")
    assert done.returncode == 0, done.stderr


def model_workers(pid: int) -> list[int]:
    """The page's children that run its model work (multiprocessing's spawned workers,
    started from whichever thread served the request; its resource tracker is a child
    too and is not counted)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            children += [int(c) for c in (task / "children").read_text().split()]
    found = []
    for child in children:
        with contextlib.suppress(FileNotFoundError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


@contextmanager
def web_server(config: Path, port: int, **env: str) -> Iterator[subprocess.Popen[str]]:
    """``peephole web`` running until the block ends; fails if it does not listen in 60 s."""
    server = subprocess.Popen(
        [sys.executable, "-m", "device", "--config", str(config), "web"],
        cwd=ROOT,
        env=child_environment(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "peephole web did not listen"
                time.sleep(0.1)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=30)


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    """One browser's worth of cookies against the page, redirects not followed."""

    port: int
    cookies: dict[str, str] = field(default_factory=dict)
    # HTTPS, trusting this context's CA, instead of plain HTTP.
    tls: ssl.SSLContext | None = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        connection = (
            http.client.HTTPSConnection("127.0.0.1", self.port, timeout=60, context=self.tls)
            if self.tls is not None
            else http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        )
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            reply = Reply(response.status, response.headers, response.read())
        finally:
            connection.close()
        for header in reply.headers.get_all("set-cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def form(self, path: str, fields: dict[str, str]) -> Reply:
        return self.request(
            "POST",
            path,
            urlencode(fields).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )

    def post_json(self, path: str, value: Any, csrf: str | None = None) -> Reply:
        headers = {"Content-Type": "application/json"}
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
        return self.request("POST", path, json.dumps(value).encode(), headers)

    def upload(self, path: str, fields: dict[str, str], filename: str, data: bytes) -> Reply:
        boundary = secrets.token_hex(16)
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.request(
            "POST", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )

    def csrf(self, page: str = "/login") -> str:
        """The session's CSRF token, as a page's forms carry it."""
        found = re.search(r'name="csrf" value="([^"]+)"', self.get(page).text)
        assert found, page
        return found.group(1)

    def log_in(self, password: str = PASSWORD) -> Reply:
        return self.form("/login", {"csrf": self.csrf(), "password": password})
