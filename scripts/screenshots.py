#!/usr/bin/env python3
"""Screenshots of the web page's Visits, People and Status, at a desktop's and a phone's
width, made by headless Debian chromium (the same browser setup as tests/web) into
docs/images/. Not a test: run it after changing how the page looks.

    .venv/bin/python scripts/screenshots.py

It makes a household of its own in a temporary folder: the shared Hamilton clip run with
nobody enrolled, Lin's visit named in the page, Alex added from his photo, the clip run
again while the door runs, then one picture of each page at each width, every face
blurred (the shared photos and clip are not copied into the project, not even as pixels).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.expected_conditions import staleness_of  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.conftest import require_shared  # noqa: E402
from tests.runtime_helpers import run_command, run_to_end  # noqa: E402
from tests.web.browser import DESKTOP, PHONE, chromium, set_width  # noqa: E402
from tests.web.web_helpers import (  # noqa: E402
    PASSWORD,
    free_port,
    peephole,
    set_password,
    web_config,
    web_server,
)

CLIP = "data/video/short_hamilton_clip.mp4"
OUT = ROOT / "docs" / "images"
BLUR_FACES = "document.querySelectorAll('img').forEach(i => { i.style.filter = 'blur(7px)'; });"


def main() -> None:
    clip = str(require_shared(CLIP))
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="peephole-shots-") as folder:
        port = free_port()
        config = web_config(Path(folder), port)
        set_password(config)
        assert run_to_end(config, None, "--source", clip).returncode == 0
        listed = [json.loads(line) for line in peephole(config, "visits", "list", "--json").stdout.splitlines()]
        lin = next(v["visit_id"] for v in listed if v["frames"] > 0)
        base = f"http://127.0.0.1:{port}"
        with web_server(config, port), chromium() as driver:

            def submit(selector: str) -> None:
                page = driver.find_element(By.TAG_NAME, "html")
                driver.find_element(By.CSS_SELECTOR, selector).click()
                WebDriverWait(driver, 120).until(staleness_of(page))

            driver.get(base + "/login")
            driver.find_element(By.ID, "password").send_keys(PASSWORD)
            submit("#login")
            driver.get(f"{base}/visits/{lin}")
            driver.find_element(By.ID, "name").send_keys("Lin-Manuel Miranda")
            submit("#name-button")
            driver.get(base + "/people")
            driver.find_element(By.ID, "add-name").send_keys("Alex Lacamoire")
            driver.find_element(By.ID, "add-photo").send_keys(str(require_shared("data/video/alex-lacamoire.png")))
            submit("#add-button")
            door = subprocess.Popen(
                run_command(config, None, "--source", clip, "--realtime"),
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(7)  # the door reports its health every few seconds
                for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
                    set_width(driver, size)
                    for page in ("status", "visits", "people"):
                        driver.get(f"{base}/{page}")
                        height = driver.execute_script("return document.documentElement.scrollHeight")
                        set_width(driver, (size[0], min(max(size[1], height), 2400)))
                        # The faces come from the shared data, which is never copied into
                        # the project: the pictures show them blurred past recognition.
                        driver.execute_script(BLUR_FACES)
                        time.sleep(0.2)
                        target = OUT / f"web-{page}-{label}.png"
                        target.write_bytes(driver.get_screenshot_as_png())
                        print(f"wrote {target.relative_to(ROOT)}")
                        set_width(driver, size)
            finally:
                door.terminate()
                door.wait(timeout=30)


if __name__ == "__main__":
    main()
