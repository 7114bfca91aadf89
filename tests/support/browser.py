"""A real headless browser for the page tests: selenium drives Debian's chromium and chromedriver.

Both come from apt through `make browser`, which `make test` runs first. Selenium is given their
paths, so Selenium Manager never runs and nothing is downloaded at test time. When they are
missing the test fails and says how to install them rather than skipping: `make test` installs
them, so a missing browser is a broken set-up, and a skip would let the page tests "pass"
without a page ever being looked at.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--hide-scrollbars",
    "--window-size=1280,900",
)
TIMEOUT_S = 30.0


@contextlib.contextmanager
def headless_chromium(timeout_s: float = TIMEOUT_S) -> Iterator[WebDriver]:
    """One chromedriver and one Chromium session with a fresh profile, quit on exit."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"no headless browser: {', '.join(missing)} missing; run `make browser` "
                    "(apt-get install chromium chromium-driver)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_script_timeout(timeout_s)
        driver.set_page_load_timeout(timeout_s)
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, script: str, *args, timeout_s: float = TIMEOUT_S):
    """Poll a page-side function body until it returns something truthy; return that."""
    return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(
        lambda _: driver.execute_script(script, *args),
        message=f"page condition not met in {timeout_s:g} s: {script}")


def full_page_screenshot(driver: WebDriver, path: str | os.PathLike) -> Path:
    """PNG of the whole page: the window grows to the document's height first (from a normal
    window, whose scrollHeight is never below the viewport's)."""
    driver.set_window_size(1280, 900)
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(1280, min(int(height) + 140, 8000))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(driver.get_screenshot_as_png())
    return path
