"""The page in a real browser (headless Debian chromium through Selenium): log in; after a
clip run with nobody enrolled, Lin's visit is on the Visits page; he is named there, and the
door names him on the next run of the clip; photos are uploaded (one with no face, Alex's),
a person renamed, a sample removed, the naming undone; the same at a phone's width."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

from device.service.health import DeviceStatus, iso_time, write_private
from tests.conftest import missing, read_bgr, require_shared
from tests.runtime_helpers import (
    StderrLines,
    clip_passes,
    json_lines,
    run_to_end,
    start_run,
    wait_until,
)
from tests.web.browser import PHONE, browser_missing, chromium, set_width
from tests.web.web_helpers import (
    PASSWORD,
    free_port,
    peephole,
    set_password,
    web_config,
    web_server,
)

CLIP = "data/video/short_hamilton_clip.mp4"
LIN_PHOTO = "data/video/lin-manuel-miranda.png"
ALEX_PHOTO = "data/video/alex-lacamoire.png"
LIN = "Lin-Manuel Miranda"
ALEX = "Alex Lacamoire"


@dataclass
class Door:
    config: Path
    base: str
    lin_visit: str

    def run_clip(self) -> list[dict[str, object]]:
        done = run_to_end(self.config, None, "--source", str(require_shared(CLIP)))
        assert done.returncode == 0, done.stderr
        return json_lines(done.stdout)


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    """The clip run once with nobody enrolled, and the page serving its visits."""
    reason = browser_missing()
    if reason:
        missing(reason)
    folder = tmp_path_factory.mktemp("door")
    port = free_port()
    config = web_config(folder, port)
    set_password(config)
    first = Door(config, f"http://127.0.0.1:{port}", "").run_clip()
    assert not [e for e in first if e["known"]]
    listed = peephole(config, "visits", "list", "--json")
    judged = [v for v in map(json.loads, listed.stdout.splitlines()) if v["frames"] > 0]
    assert len(judged) == 1, listed.stdout  # Lin: the one visitor the door saw well
    with web_server(config, port):
        yield Door(config, f"http://127.0.0.1:{port}", judged[0]["visit_id"])


@pytest.fixture(scope="module")
def browser(door: Door) -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        driver.get(door.base + "/visits")
        assert driver.current_url == door.base + "/login"
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        submit(driver, driver.find_element(By.ID, "login"))
        assert driver.current_url == door.base + "/visits"
        yield driver


def submit(driver: webdriver.Chrome, button: WebElement) -> None:
    """Click a form's button and wait for the page it leads to (naming runs the model)."""
    page = driver.find_element(By.TAG_NAME, "html")
    button.click()
    WebDriverWait(driver, 120).until(staleness_of(page))


def flash(driver: webdriver.Chrome) -> str:
    return " | ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, ".flash"))


def person_section(driver: webdriver.Chrome, name: str) -> WebElement | None:
    for section in driver.find_elements(By.CSS_SELECTOR, "section.person"):
        if section.find_element(By.CSS_SELECTOR, ".name").text == name:
            return section
    return None


def visit_row(driver: webdriver.Chrome, visit_id: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'li.visit[data-visit="{visit_id}"]')


def name_visit(driver: webdriver.Chrome, door: Door, name: str) -> None:
    driver.get(door.base + "/visits")
    visit_row(driver, door.lin_visit).find_element(By.CSS_SELECTOR, "a.visit-link").click()
    assert driver.current_url == f"{door.base}/visits/{door.lin_visit}"
    verdicts = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".face figcaption")]
    assert "accepted" in verdicts, verdicts  # the gate's verdict of each face, before naming
    driver.find_element(By.ID, "name").send_keys(name)
    submit(driver, driver.find_element(By.ID, "name-button"))


def upload(driver: webdriver.Chrome, door: Door, name: str, photo: Path) -> str:
    driver.get(door.base + "/people")
    driver.find_element(By.ID, "add-name").send_keys(name)
    driver.find_element(By.ID, "add-photo").send_keys(str(photo))
    submit(driver, driver.find_element(By.ID, "add-button"))
    return flash(driver)


def test_lin_named_in_the_browser_is_known_to_the_running_door_on_its_next_pass(
    door: Door, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    browser.get(door.base + "/visits")
    row = visit_row(browser, door.lin_visit)
    assert row.find_element(By.CSS_SELECTOR, ".who").text == "unknown (nobody enrolled)"
    assert row.find_element(By.CSS_SELECTOR, "img").get_property("naturalWidth") == 112
    # The door runs the clip twice over at its own pace while the household names Lin.
    running = start_run(
        door.config,
        None,
        "--source",
        str(clip_passes(tmp_path / "twice.avi", 2, gap_seconds=1.0)),
        "--realtime",
    )
    output = StderrLines(running)
    try:
        started = wait_until(lambda: any("watching" in line for _, line in output.lines), 60)
        assert started, output.lines
        name_visit(browser, door, LIN)
        assert flash(browser).startswith(f"visit {door.lin_visit} named as new person {LIN}: ")
        assert browser.find_element(By.CSS_SELECTOR, "h1.who").text == f"{LIN} (named)"
        running.wait(timeout=300)
    finally:
        if running.poll() is None:
            running.kill()
    time.sleep(0.2)  # the last lines read
    assert running.returncode == 0, output.lines
    assert any("gallery changed: 1 person enrolled" in line for _, line in output.lines)
    seen = [e for e in output.events if e["event"] == "visitor" and e["frames"]]
    assert seen and seen[-1]["known"] and seen[-1]["person"] == LIN, seen
    assert {e["person"] for e in seen if e["known"]} == {LIN}


def test_photos_uploaded_show_their_verdict_and_alex_joins_people(
    door: Door, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    photo = read_bgr(require_shared(LIN_PHOTO))
    shirt = tmp_path / "shirt.png"  # the bottom of Lin's photo: no face in it
    cv2.imwrite(str(shirt), photo[photo.shape[0] * 2 // 3 :])
    said = upload(browser, door, "Nobody", shirt)
    assert said == "photo not taken: no face; nothing was stored"
    assert person_section(browser, "Nobody") is None
    said = upload(browser, door, ALEX, require_shared(ALEX_PHOTO))
    assert said == f"photo taken: one more sample of {ALEX}"
    alex = person_section(browser, ALEX)
    assert alex is not None and len(alex.find_elements(By.CSS_SELECTOR, ".sample img")) == 1


def test_rename_and_remove_a_sample(door: Door, browser: webdriver.Chrome) -> None:
    browser.get(door.base + "/people")
    alex = person_section(browser, ALEX)
    assert alex is not None
    alex.find_element(By.TAG_NAME, "summary").click()
    alex.find_element(By.CSS_SELECTOR, ".new-name").send_keys("Alex L.")
    submit(browser, alex.find_element(By.CSS_SELECTOR, "button.rename"))
    assert flash(browser) == f"renamed {ALEX} to Alex L."
    assert person_section(browser, ALEX) is None and person_section(browser, "Alex L.")
    lin = person_section(browser, LIN)
    assert lin is not None
    samples = len(lin.find_elements(By.CSS_SELECTOR, ".sample"))
    assert samples >= 2
    submit(browser, lin.find_element(By.CSS_SELECTOR, "button.remove-sample"))
    assert flash(browser) == f"removed one sample of {LIN}"
    lin = person_section(browser, LIN)
    assert lin is not None and len(lin.find_elements(By.CSS_SELECTOR, ".sample")) == samples - 1


def test_undo_takes_the_naming_back(door: Door, browser: webdriver.Chrome) -> None:
    browser.get(door.base + "/visits")
    submit(browser, browser.find_element(By.ID, "undo"))
    assert flash(browser).startswith(f"undone: visit {door.lin_visit} is no longer named as {LIN}")
    assert visit_row(browser, door.lin_visit).find_element(By.CSS_SELECTOR, ".who").text == (
        "unknown (nobody enrolled)"
    )
    browser.get(door.base + "/people")
    assert person_section(browser, LIN) is None and person_section(browser, "Alex L.")


def test_status_refreshes_without_a_reload(door: Door, browser: webdriver.Chrome) -> None:
    browser.get(door.base + "/status")
    browser.execute_script("window.notReloaded = true;")
    status = DeviceStatus(
        device_id="door", version="0.1.0", model_file="model.tflite", embedding_key="abc123def456",
        gallery_generation=1, people=2, fps=12.5, last_frame=iso_time(time.time()),
        outbox_backlog=7, broker=None, status_interval=30.0, time=iso_time(time.time()),
    )  # fmt: skip
    write_private(door.config.parent / "status.json", status.to_json())
    cell = browser.find_element(By.CSS_SELECTOR, 'dd[data-key="fps"]')
    WebDriverWait(browser, 10).until(lambda _: cell.text == "12.5")
    assert browser.find_element(By.CSS_SELECTOR, 'dd[data-key="outbox_backlog"]').text == "7"
    assert browser.find_element(By.ID, "state").text == "running"
    assert browser.execute_script("return window.notReloaded === true")


def test_at_a_phone_width_the_pages_fit_and_naming_works(
    door: Door, browser: webdriver.Chrome
) -> None:
    set_width(browser, PHONE)
    try:
        for page in ("/visits", "/people", "/status", f"/visits/{door.lin_visit}"):
            browser.get(door.base + page)
            width = browser.execute_script("return window.innerWidth")
            overflow = browser.execute_script("return document.documentElement.scrollWidth")
            assert width == PHONE[0] and overflow <= PHONE[0], (page, width, overflow)
            assert all(
                link.is_displayed() for link in browser.find_elements(By.CSS_SELECTOR, "nav a")
            )
        name_visit(browser, door, LIN)
        assert flash(browser).startswith(f"visit {door.lin_visit} named as new person {LIN}: ")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
