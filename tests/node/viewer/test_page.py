"""The viewer page in real headless Chromium: it connects, shows agents and frames, and
its controls change the image."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.browser import chromium_driver, frame_pixels, page_shows_volume
from tests.node.viewer._launch import running_session

pytestmark = pytest.mark.browser


def _wait(what: str, predicate: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"page never showed {what} within {timeout_s} s")
        time.sleep(0.1)


def _text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def test_page_shows_the_volume_and_its_controls_work(tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from hpcrun.node.viewer.kernel import warm

    warm()
    driver = chromium_driver(tmp_path)
    try:
        with running_session(tmp_path, job_id="930", agents=1) as session:
            session.wait_status(lambda s: s["agents"] == 2)
            driver.get(session.url + "/")
            assert page_shows_volume(driver, agents=2)
            assert _text(driver, "nodes") == "2"
            assert int(_text(driver, "frame-number")) > 0
            assert "n1" in _text(driver, "node-list") and "n2" in _text(driver, "node-list")
            shot = frame_pixels(driver)

            def frame_changes_from(before: Any) -> Callable[[], bool]:
                def changed() -> bool:
                    now = frame_pixels(driver)
                    return bool(now.shape == before.shape and
                                np.abs(now.astype(int) - before.astype(int)).mean() > 1.0)
                return changed

            driver.find_element(By.ID, "show-bricks").click()
            _wait("brick colours", frame_changes_from(shot))
            assert session.rpc("get_view")["show_bricks"] is True
            tinted = frame_pixels(driver)

            Select(driver.find_element(By.ID, "colormap")).select_by_value("viridis")
            _wait("the new colormap", frame_changes_from(tinted))
            assert session.rpc("get_view")["colormap"] == "viridis"

            camera = session.rpc("get_camera")
            frame = driver.find_element(By.ID, "frame")
            ActionChains(driver).move_to_element(frame).click_and_hold() \
                .move_by_offset(60, 20).release().perform()
            _wait("an orbit", lambda: session.rpc("get_camera")["eye"] != camera["eye"])

            roi = driver.find_element(By.ID, "roi-z1")
            roi.clear()
            roi.send_keys("10\n")
            _wait("the new ROI", lambda: session.rpc("get_view")["roi"][5] == 10.0)
    finally:
        driver.quit()


def test_page_previews_while_dragging_and_its_opacity_ramp_works(tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from hpcrun.node.viewer.kernel import warm
    from tests.browser import lit_pixels

    warm()
    driver = chromium_driver(tmp_path)
    try:
        with running_session(tmp_path, job_id="931", agents=1) as session:
            session.wait_status(lambda s: s["agents"] == 2)
            driver.get(session.url + "/")
            assert page_shows_volume(driver, agents=2)
            _wait("a full frame", lambda: _text(driver, "level") == "full")
            driver.execute_script(
                "window.levels = []; const f = document.getElementById('frame');"
                "f.addEventListener('load', () => window.levels.push(Number(f.dataset.level)));")
            chain = ActionChains(driver).move_to_element(driver.find_element(By.ID, "frame"))
            chain.click_and_hold()
            for _ in range(12):
                chain.move_by_offset(6, 2).pause(0.05)
            chain.release().perform()
            _wait("a full frame after the drag", lambda: _text(driver, "level") == "full")
            levels = driver.execute_script("return window.levels;")
            assert any(level > 1 for level in levels), levels  # previews while dragging
            assert levels[-1] == 1
            shown = frame_pixels(driver)
            assert shown.shape[:2] == frame_pixels(driver).shape[:2]

            driver.execute_script(
                "const g = document.getElementById('ramp-gain'); g.value = '0';"
                "g.dispatchEvent(new Event('input'));")
            _wait("the ramp in the view",
                  lambda: session.rpc("get_view")["opacity"] == [[0, 0], [0, 0], [1, 0]])
            # (inside the image's 1-pixel border)
            _wait("a transparent volume",
                  lambda: lit_pixels(frame_pixels(driver)[2:-2, 2:-2]) == 0)
            driver.find_element(By.ID, "reset-ramp").click()
            _wait("the colormap's own opacity", lambda: session.rpc("get_view")["opacity"] == [])
            _wait("the volume again",
                  lambda: lit_pixels(frame_pixels(driver)[2:-2, 2:-2]) > 2000)
    finally:
        driver.quit()
