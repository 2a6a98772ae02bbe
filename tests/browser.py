"""Headless Chromium for tests that look at a page the way a person would.

`chromium_driver(tmp_path)` starts Debian's chromium through chromedriver (both from
apt: `chromium chromium-driver`) with a fresh profile and without anything that phones
home, so it works offline and leaves nothing behind. Where they are not installed the
test is skipped with the reason, except in CI (CI=true), where a skipped browser test
would hide a broken page: there it fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver",)
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)


def _find(candidates: tuple[str, ...], name: str) -> str | None:
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which(name)


class BrowserMissing(Exception):
    """chromium or chromedriver is not installed; the message says which and how."""


def chromium_driver(tmp_path: Path) -> Any:
    """`launch_chromium` for a test: skipped without a browser, failed in CI."""
    try:
        return launch_chromium(tmp_path)
    except BrowserMissing as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"browser test cannot run in CI: {exc}")
        pytest.skip(str(exc))


def launch_chromium(tmp_path: Path) -> Any:
    """A selenium Chrome webdriver on headless Chromium (profile and log under
    `tmp_path`); the caller must `quit()` it. Raises BrowserMissing."""
    chromium = _find(CHROMIUM_CANDIDATES, "chromium")
    chromedriver = _find(CHROMEDRIVER_CANDIDATES, "chromedriver")
    if not chromium or not chromedriver:
        missing = ", ".join(n for n, p in (("chromium", chromium),
                                           ("chromedriver", chromedriver)) if not p)
        raise BrowserMissing(f"{missing} not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=chromedriver, log_output=str(tmp_path / "chromedriver.log"))
    return webdriver.Chrome(options=options, service=service)


def frame_pixels(driver: Any) -> Any:
    """The viewer page's #frame as the browser draws it: an (h, w, 3) uint8 array."""
    import io

    import numpy as np
    from PIL import Image
    from selenium.webdriver.common.by import By

    png = driver.find_element(By.ID, "frame").screenshot_as_png
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def lit_pixels(image: Any, threshold: int = 24) -> int:
    """Pixels clearly brighter than the viewer's black background."""
    return int((image.astype(int).sum(axis=2) > threshold).sum())


def page_shows_volume(driver: Any, agents: int, timeout_s: float = 60.0,
                      min_pixels: int = 2000) -> bool:
    """Wait until the viewer page (already loaded in `driver`) says `agents` in #agents and
    #frame shows a non-blank image; True, or AssertionError saying what the page showed."""
    import time

    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout_s
    shown, loaded, pixels = "", False, 0
    while True:
        shown = str(driver.find_element(By.ID, "agents").text)
        loaded = bool(driver.execute_script(
            "const f = document.getElementById('frame');"
            "return f.complete && f.naturalWidth > 0;"))
        if shown == str(agents) and loaded:
            pixels = lit_pixels(frame_pixels(driver))
            if pixels >= min_pixels:
                return True
        if time.monotonic() > deadline:
            raise AssertionError(
                f"after {timeout_s:.0f} s the page shows #agents={shown!r} (want {agents}), "
                f"image loaded: {loaded}, {pixels} lit pixels (want >= {min_pixels})"
            )
        time.sleep(0.2)
