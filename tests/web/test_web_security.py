"""The page's security over real HTTP: ``peephole web`` in its own process with a password,
a gallery holding a person named like a script, and each refusal the issue asks for."""

from __future__ import annotations

import http.client
import io
import re
import ssl
import struct
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import pytest

from tests.broker import Pki
from tests.conftest import read_bgr, require_shared
from tests.web.web_helpers import (
    PASSWORD,
    Client,
    free_port,
    peephole,
    set_password,
    web_config,
    web_server,
)

LIN = "data/video/lin-manuel-miranda.png"
SCRIPT_NAME = "<script>alert(1)</script>"
UPLOAD_LIMIT = 256 * 1024
LOGIN_WINDOW_S = 3.0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A running page with a password, and Lin enrolled twice: once as himself, once under
    a name that is a script tag."""
    folder = tmp_path_factory.mktemp("web")
    port = free_port()
    config = web_config(
        folder,
        port,
        f"max_upload_bytes = {UPLOAD_LIMIT}\nmax_upload_pixels = 4000000\n"
        f"login_attempts = 3\nlogin_window = {LOGIN_WINDOW_S}\n",
    )
    photo = str(require_shared(LIN))
    for name, extra in (("Lin", []), (SCRIPT_NAME, ["--allow-lookalike"])):
        done = peephole(config, "enroll", "--name", name, *extra, "--images", photo)
        assert done.returncode == 0, done.stderr
    set_password(config)
    with web_server(config, port):
        yield config, port


def logged_in(port: int) -> Client:
    client = Client(port)
    assert client.log_in().status == 303
    return client


def people(client: Client) -> list[str]:
    reply = client.get("/api/people")
    assert reply.status == 200
    return sorted(p["name"] for p in reply.json())


def test_without_a_session_no_page_api_call_or_image_is_served(site: tuple[Path, int]) -> None:
    _, port = site
    stranger = Client(port)
    for page in ("/", "/visits", "/people", "/status", "/visits/abc"):
        reply = stranger.get(page)
        assert reply.status == 303 and reply.headers["location"] == "/login", page
    for call in ("/api/visits", "/api/people", "/api/status", "/api/openapi.json"):
        reply = stranger.get(call)
        assert reply.status == 401, call
        assert "Lin" not in reply.text
    for image in ("/people/samples/1.png", "/visits/abc/crops/0.png", "/visits/abc/doorstep.jpg"):
        reply = stranger.get(image)
        assert reply.status == 401 and not reply.body.startswith(b"\x89PNG"), image
    assert stranger.post_json("/api/people/remove", {"name": "Lin"}).status == 401
    assert people(logged_in(port)) == sorted(["Lin", SCRIPT_NAME])


def test_the_session_cookie_is_httponly_strict_and_new_at_login(site: tuple[Path, int]) -> None:
    _, port = site
    client = Client(port)
    before = client.get("/login")
    cookie = before.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback: a Secure cookie would never return
    anonymous = client.cookies["peephole_session"]
    assert client.log_in().status == 303
    assert client.cookies["peephole_session"] != anonymous
    assert Client(port, {"peephole_session": anonymous}).get("/people").status == 303


def test_over_tls_the_cookie_is_secure_too(tmp_path: Path, pki: Pki) -> None:
    port = free_port()
    config = web_config(
        tmp_path, port, f'tls_cert = "{pki.server_cert}"\ntls_key = "{pki.server_key}"\n'
    )
    set_password(config)
    with web_server(config, port):
        client = Client(port, tls=ssl.create_default_context(cafile=str(pki.ca)))
        cookie = client.get("/login").headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert client.log_in().status == 303 and client.get("/people").status == 200
        plain = Client(port)
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            plain.get("/login")


def test_a_change_without_the_csrf_token_is_refused(site: tuple[Path, int]) -> None:
    _, port = site
    client = logged_in(port)
    form = {"name": "Lin", "new_name": "Mallory"}
    assert client.form("/people/rename", form).status == 403
    assert client.form("/people/rename", {**form, "csrf": "forged"}).status == 403
    assert client.post_json("/api/people/rename", form).status == 403
    assert client.post_json("/api/people/rename", form, csrf="forged").status == 403
    other = logged_in(port)  # another session's token is no good either
    assert client.post_json("/api/people/rename", form, csrf=other.csrf("/people")).status == 403
    assert "Mallory" not in people(client)
    renamed = client.post_json("/api/people/rename", form, csrf=client.csrf("/people"))
    assert renamed.status == 200, renamed.text
    back = {"name": "Mallory", "new_name": "Lin"}
    assert client.form("/people/rename", {**back, "csrf": client.csrf("/people")}).status == 303
    assert people(client) == sorted(["Lin", SCRIPT_NAME])


def test_a_name_that_is_a_script_tag_is_shown_as_text(site: tuple[Path, int]) -> None:
    _, port = site
    page = logged_in(port).get("/people").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert SCRIPT_NAME not in page
    assert re.findall(r"<script\b", page) == []  # the People page runs no script at all


def test_images_need_a_session_and_are_never_cached(site: tuple[Path, int]) -> None:
    _, port = site
    client = logged_in(port)
    crop = client.get("/api/people/detail?name=Lin").json()["sample_crops"][0]["id"]
    reply = client.get(f"/people/samples/{crop}.png")
    assert reply.status == 200 and reply.body.startswith(b"\x89PNG")
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    "path",
    [
        "/visits/..%2F..%2F..%2Fetc%2Fpasswd/doorstep.jpg",
        "/visits/../../etc/passwd/doorstep.jpg",
        "/visits/%2e%2e/crops/0.png",
        "/people/samples/..%2F..%2Fconfig.toml.png",
        "/people/samples/-1.png",
        "/static/..%2F..%2Fconfig.py",
        "/static/../app.py",
        "/visits/nosuchvisit/doorstep.jpg",
        "/visits/nosuchvisit/crops/0.png",
    ],
)
def test_a_path_traversal_image_request_is_refused(site: tuple[Path, int], path: str) -> None:
    _, port = site
    reply = logged_in(port).get(path)
    assert reply.status in (404, 422), (path, reply.status)
    assert b"root:" not in reply.body and b"import" not in reply.body
    assert not reply.body.startswith((b"\x89PNG", b"\xff\xd8"))


def png_bomb(width: int, height: int) -> bytes:
    """A real PNG, a few KB, that decodes to width x height pixels (1-bit grey, all black)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\0" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row * 1000) for _ in range(height // 1000)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def padded_photo(size: int) -> bytes:
    """Lin's photo as a JPEG, with bytes after its end up to ``size`` (a real, readable image)."""
    photo = bytes(cv2.imencode(".jpg", read_bgr(require_shared(LIN)))[1])
    assert len(photo) < size
    return photo + b"\0" * (size - len(photo))


def test_oversized_bomb_and_non_image_uploads_are_refused_in_one_line_with_nothing_stored(
    site: tuple[Path, int],
) -> None:
    config, port = site
    client = logged_in(port)
    csrf = client.csrf("/people")
    before = (config.parent / "gallery.db").read_bytes()
    large = padded_photo(UPLOAD_LIMIT + 1)  # over the limit, within the form's overhead
    huge = padded_photo(4 * UPLOAD_LIMIT)  # refused before its body is read
    bomb = png_bomb(20_000, 20_000)
    assert len(bomb) < 100_000
    cases = {
        "large.jpg": (large, 400, "larger than 256 KiB"),
        "huge.jpg": (huge, 413, "larger than"),
        "bomb.png": (bomb, 400, "20000x20000, more than 4 megapixels"),
        "notes.txt": (b"just some text\n" * 100, 400, "not an image"),
    }
    for filename, (data, status, words) in cases.items():
        reply = client.upload("/api/people/photos", {"csrf": csrf, "name": "Eve"}, filename, data)
        assert reply.status == status, (filename, reply.status, reply.text)
        detail = reply.json()["detail"]
        assert words in detail and "\n" not in detail, (filename, detail)
        if status == 400:
            assert detail.endswith("nothing was stored"), detail
    form = client.upload("/people/photos", {"csrf": csrf, "name": "Eve"}, "bomb.png", bomb)
    assert form.status == 303
    assert "megapixels; nothing was stored" in client.get("/people").text
    assert "Eve" not in people(client)
    assert (config.parent / "gallery.db").read_bytes() == before


def test_a_wrong_password_is_slowed_down_and_repeated_ones_are_locked_out(
    site: tuple[Path, int],
) -> None:
    _, port = site
    time.sleep(LOGIN_WINDOW_S)  # failures of other tests have aged out
    client = Client(port)
    started = time.monotonic()
    assert client.log_in("wrong password").status == 401
    wrong = time.monotonic() - started
    started = time.monotonic()
    assert client.log_in().status == 303
    right = time.monotonic() - started
    print(f"\nwrong password answered after {wrong:.2f} s, the right one after {right:.2f} s")
    assert wrong >= 1.0 > right
    api = Client(port)
    with ThreadPoolExecutor(3) as guesses:  # at once: each wrong one takes a second
        tries = list(
            guesses.map(lambda _: api.post_json("/api/login", {"password": "x"}), range(3))
        )
    assert [t.status for t in tries] == [401] * 3
    locked = api.post_json("/api/login", {"password": PASSWORD})
    assert locked.status == 429 and int(locked.headers["retry-after"]) >= 1
    assert Client(port).log_in().status == 429  # the page's form counts the same tries
    time.sleep(LOGIN_WINDOW_S)
    assert "csrf" in api.post_json("/api/login", {"password": PASSWORD}).json()


def test_set_password_keeps_only_a_slow_hash_readable_by_its_owner(site: tuple[Path, int]) -> None:
    config, _ = site
    stored = config.parent / "web-password"
    assert stored.stat().st_mode & 0o777 == 0o600
    text = stored.read_text()
    assert PASSWORD not in text and text.startswith("scrypt$16384$8$1$")
    short = peephole(config, "web", "set-password", "--stdin", stdin="short\n")
    assert short.returncode == 1 and short.stderr.splitlines() == [
        "peephole: error: the password must have at least 8 characters"
    ]
    assert stored.read_text() == text


def test_another_address_without_a_password_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    config = web_config(tmp_path, free_port(), 'host = "0.0.0.0"\n')
    done = peephole(config, "web")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "peephole: error: [web] host 0.0.0.0 is reachable from other machines: "
        "set a password first with 'peephole web set-password'"
    ]
    flag = peephole(web_config(tmp_path, free_port()), "web", "--host", "192.168.1.20")
    assert flag.returncode == 1 and "set a password first" in flag.stderr


def test_on_loopback_without_a_password_the_page_is_open(tmp_path: Path) -> None:
    port = free_port()
    config = web_config(tmp_path, port)
    with web_server(config, port) as server:
        client = Client(port)
        assert client.get("/people").status == 200
        assert client.get("/api/people").json() == []
        assert client.post_json("/api/visits/undo", {}).status == 403  # CSRF still checked
        undo = client.post_json("/api/visits/undo", {}, csrf=client.csrf("/people"))
        assert undo.status == 400 and undo.json()["detail"] == "there is no naming to undo"
        set_password(config)  # closes the page at once, to the sessions already open too
        assert client.get("/people").status == 303 and client.get("/api/people").status == 401
        assert client.log_in().status == 303 and client.get("/people").status == 200
        server.terminate()
        output = io.StringIO(server.communicate(timeout=30)[0])
    assert "no password set: anyone on this machine can open the page" in output.getvalue()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("login_attempts = 0", "[web] login_attempts: must be 1 to 1000, not 0"),
        ('tls_cert = "/x.pem"', "[web] tls_cert and tls_key go together"),
        ("max_upload_bytes = 10", "[web] max_upload_bytes: must be 1024 to"),
        ('host = "bad host"', "[web] host 'bad host' is not an address"),
    ],
)
def test_a_bad_web_section_is_one_line(tmp_path: Path, section: str, message: str) -> None:
    done = peephole(web_config(tmp_path, 8080, section + "\n"), "web")
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], lines
