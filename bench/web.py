"""The web page's cost: page times with 1,000 stored visits, the page process's memory,
and the door's frames per second while a browser reloads the Visits page every second.

A household of its own in a temporary folder: the Hamilton clip run once with nobody
enrolled, its visits copied to 1,000 (each with its 4 faces and doorstep), Lin named.
Then ``peephole web`` in its own process, as on the door:

- page times: each page fetched in turns (the order rotating), a logged-in session,
  over HTTP on 127.0.0.1; median and p95;
- memory: the page process's resident set (``VmRSS``) and peak (``VmHWM``) after the
  page times, then with its face models' child after one photo upload, and once that
  child has ended (``model_idle_seconds``); the page runs with the environment its unit
  sets (``systemd/peephole-web.service``);
- the door: ``peephole run`` on the clip ten times over (not paced: as fast as it
  goes), with and without a client fetching every second what a browser fetches when it
  reloads ``/visits`` (the page, its stylesheet, the 50 faces on it; the browser itself
  runs on the phone, not on the door), alternating, the door's own
  ``N frames in S s (F fps)`` line. The page runs at ``Nice=5``, as its unit says.

    python -m bench.web [--requests 100] [--door-runs 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench.machine import cpu_name
from device.identity.visits import VisitStore
from tests.conftest import require_shared
from tests.runtime_helpers import clip_passes, run_to_end
from tests.web.web_helpers import (
    Client,
    free_port,
    model_workers,
    peephole,
    set_password,
    web_config,
    web_server,
)

CLIP = "data/video/short_hamilton_clip.mp4"
VISITS = 1000
# The models' child ends this long after its last call (the default is 120 s).
IDLE_S = 5.0


def fill_visits(visits_db: Path, count: int) -> str:
    """Copies of the clip's visits up to ``count``, a minute apart; Lin's visit id."""
    with VisitStore.open(visits_db) as store:
        found = store.find(None)
        full = [store.get(v.id) for v in found]
        lin = next(v.id for v in found if v.frames > 0)
        now = time.time()
        for index in range(count - len(full)):
            model = full[index % len(full)]
            seen = now - 3600 - index * 60
            store.save(
                dataclasses.replace(model, id=f"b{index:09x}", first_seen=seen, last_seen=seen + 3)
            )
    return lin


def memory(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values


def unit_environment() -> dict[str, str]:
    """The ``Environment=`` assignments of the page's unit that tune its memory (glibc's)."""
    unit = Path(__file__).parent.parent / "systemd" / "peephole-web.service"
    found: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            for assignment in line.removeprefix("Environment=").split():
                key, _, value = assignment.partition("=")
                if key.startswith("MALLOC_"):
                    found[key] = value
    return found


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def door_fps(config: Path, video: Path) -> float:
    done = run_to_end(config, None, "--source", str(video), timeout=600)
    assert done.returncode == 0, done.stderr
    found = re.findall(r"(\d+) frames in ([\d.]+) s \(([\d.]+) fps\)", done.stderr)
    assert found, done.stderr
    return float(found[-1][2])


def reload_every_second(client: Client, stop: threading.Event, count: list[int]) -> None:
    """What a phone's browser asks of the door when it reloads /visits: the page, its
    stylesheet and every face on it (``no-store``: nothing comes from its cache)."""
    while not stop.wait(1.0):
        page = client.get("/visits")
        assert page.status == 200
        for path in ["/static/style.css", *re.findall(r'src="(/visits/[^"]+)"', page.text)]:
            assert client.get(path).status == 200, path
        count[0] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="fetches of each page")
    parser.add_argument("--door-runs", type=int, default=3, help="door runs with and without")
    parser.add_argument("--clip-times", type=int, default=10, help="the clip this often per run")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="peephole-bench-web-") as name:
        folder = Path(name)
        port = free_port()
        config = web_config(folder, port, f"model_idle_seconds = {IDLE_S}\n")
        set_password(config)
        assert run_to_end(config, None, "--source", str(require_shared(CLIP))).returncode == 0
        lin = fill_visits(folder / "visits.db", VISITS)
        named = peephole(config, "visits", "name", lin, "--as", "Lin-Manuel Miranda")
        assert named.returncode == 0, named.stderr
        video = clip_passes(folder / "clip.avi", options.clip_times)
        with web_server(config, port, **unit_environment()) as server:
            os.setpriority(os.PRIO_PROCESS, server.pid, 5)  # as peephole-web.service's Nice=5
            client = Client(port)
            assert client.log_in().status == 303
            pages = {
                "/visits (50 of 1,000)": "/visits",
                "/visits/{id} (faces, gate verdicts)": f"/visits/{lin}",
                "/people": "/people",
                "/status": "/status",
                "/api/visits?limit=1000": "/api/visits?limit=1000",
                "a face (PNG)": f"/visits/{lin}/crops/0.png",
            }
            for path in pages.values():  # warm: the first visit page starts the models' child
                assert client.get(path).status == 200, path
            times: dict[str, list[float]] = {label: [] for label in pages}
            labels = list(pages)
            for turn in range(options.requests):
                for label in labels[turn % len(labels) :] + labels[: turn % len(labels)]:
                    started = time.perf_counter()
                    reply = client.get(pages[label])
                    times[label].append((time.perf_counter() - started) * 1000)
                    assert reply.status == 200
            after_pages = memory(server.pid)
            photo = require_shared("data/video/alex-lacamoire.png").read_bytes()
            csrf = client.csrf("/people")
            uploaded = client.upload(
                "/api/people/photos", {"csrf": csrf, "name": "Alex"}, "a.png", photo
            )
            assert uploaded.status == 200 and json.loads(uploaded.body)["accepted"]
            after_upload = memory(server.pid)
            (worker,) = model_workers(server.pid)
            models_child = memory(worker)
            ended = time.monotonic() + IDLE_S + 30
            while model_workers(server.pid) and time.monotonic() < ended:
                time.sleep(0.5)
            assert not model_workers(server.pid), "the models' child did not end when idle"
            after_idle = memory(server.pid)

            fps: dict[str, list[float]] = {"without": [], "with": []}
            phone = Client(port)
            assert phone.log_in().status == 303
            for run in range(options.door_runs * 2):
                browsing = (run % 2 == 1) == (run // 2 % 2 == 0)  # off, on, on, off, ...
                stop = threading.Event()
                reloads = [0]
                browser = threading.Thread(
                    target=reload_every_second, args=(phone, stop, reloads), daemon=True
                )
                if browsing:
                    browser.start()
                fps["with" if browsing else "without"].append(door_fps(config, video))
                stop.set()
                if browsing:
                    browser.join()
                    assert reloads[0] >= 5, reloads  # the run lasted several reloads

    print(f"{time.strftime('%Y-%m-%d')}, {cpu_name()}, {VISITS} visits stored\n")
    print("| page | median ms | p95 ms |")
    print("|---|---|---|")
    for label, values in times.items():
        print(f"| {label} | {statistics.median(values):.1f} | {percentile(values, 0.95):.1f} |")
    print("\n| page process | resident MB | peak MB |")
    print("|---|---|---|")
    print(f"| after the page times | {after_pages['VmRSS']:.0f} | {after_pages['VmHWM']:.0f} |")
    print(
        f"| after one upload (made in the models' child) | {after_upload['VmRSS']:.0f} | {after_upload['VmHWM']:.0f} |"
    )
    print(
        f"| the models' child, after that upload | {models_child['VmRSS']:.0f} | {models_child['VmHWM']:.0f} |"
    )
    print(
        f"| page process once the child ended ({IDLE_S:.0f} s idle) | {after_idle['VmRSS']:.0f} | {after_idle['VmHWM']:.0f} |"
    )
    print(f"\n| door, clip x{options.clip_times} unpaced | fps per run | median |")
    print("|---|---|---|")
    for label, values in fps.items():
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(
            f"| {label} a browser reloading /visits every second | {runs} | {statistics.median(values):.1f} |"
        )
    ratio = statistics.median(fps["with"]) / statistics.median(fps["without"])
    print(f"\ndoor fps with the browser / without: {ratio:.3f}")


if __name__ == "__main__":
    main()
