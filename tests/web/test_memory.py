"""The page's own process stays small: the face models live in a child that ends when idle.

Read from the processes themselves: which shared libraries ``/proc/PID/maps`` shows,
and which children ``/proc/PID/task/*/children`` lists.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.config import Config
from device.identity.visits import VisitStore
from device.vision.pipeline import FacePipeline
from tests.conftest import require_shared
from tests.visit_helpers import ALEX, LIN, photo_visit
from tests.web.web_helpers import (
    Client,
    free_port,
    model_workers,
    set_password,
    web_config,
    web_server,
)

IDLE_S = 2.0
# Libraries of the face models' stack: OpenCV, LiteRT, and the site key's cryptography.
MODEL_LIBRARIES = ("/cv2/", "/ai_edge_litert/", "/cryptography/")


def mapped(pid: int) -> set[str]:
    """The model libraries mapped into the process."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {library for library in MODEL_LIBRARIES if library in maps}


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[int, Client]]:
    pipeline = FacePipeline.from_config(Config())
    with VisitStore.open(tmp_path / "visits.db", create=True) as store:
        store.save(photo_visit(pipeline, require_shared(LIN), "lin-visit", copies=2))
    port = free_port()
    config = web_config(
        tmp_path,
        port,
        f'model_idle_seconds = {IDLE_S}\n[visits]\npath = "{tmp_path / "visits.db"}"\n',
    )
    set_password(config)
    with web_server(config, port) as server:
        client = Client(port)
        assert client.log_in().status == 303
        yield server.pid, client


def test_the_page_never_loads_the_models_and_their_process_ends_when_idle(
    page: tuple[int, Client],
) -> None:
    pid, client = page
    for path in ("/visits", "/people", "/status", "/api/visits"):
        assert client.get(path).status == 200, path
    assert mapped(pid) == set() and model_workers(pid) == []

    shown = client.get("/visits/lin-visit")  # the gate's verdicts embed the faces
    assert shown.status == 200 and "accepted" in shown.text
    workers = model_workers(pid)
    assert len(workers) == 1 and "/cv2/" in mapped(workers[0])

    named = client.post_json("/api/visits/lin-visit/name", {"name": "Lin"}, client.csrf("/people"))
    assert named.status == 200, named.text
    assert named.json()["samples"] >= 1
    assert model_workers(pid) == workers  # the same child, still warm
    assert mapped(pid) == set()

    deadline = time.monotonic() + IDLE_S + 10
    while model_workers(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert model_workers(pid) == [], "the model process outlived its idle time"
    people = client.get("/api/people").json()
    assert [p["name"] for p in people] == ["Lin"]

    # The next call starts a new child; what it sends back loads nothing here either.
    undone = client.post_json("/api/visits/undo", {}, client.csrf("/people"))
    assert undone.status == 200 and "Lin" in undone.json()["summary"]
    photo = require_shared(ALEX).read_bytes()
    fields = {"csrf": client.csrf("/people"), "name": "Alex"}
    uploaded = client.upload("/api/people/photos", fields, "alex.png", photo)
    assert uploaded.status == 200 and uploaded.json()["accepted"], uploaded.text
    assert len(model_workers(pid)) == 1 and mapped(pid) == set()


def test_a_killed_model_process_costs_one_call_in_one_line_and_the_next_starts_another(
    page: tuple[int, Client],
) -> None:
    pid, client = page
    assert client.get("/api/visits/lin-visit").status == 200
    (worker,) = model_workers(pid)
    os.kill(worker, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    deadline = time.monotonic() + 10
    while model_workers(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    failed = client.get("/api/visits/lin-visit")
    assert failed.status == 400
    assert failed.json() == {"detail": "the face models' process stopped (see the log); try again"}
    again = client.get("/api/visits/lin-visit")
    assert again.status == 200 and again.json()["faces"], again.text
    assert len(model_workers(pid)) == 1 and model_workers(pid) != [worker]
