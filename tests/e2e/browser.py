"""Headless Chromium for the explorer's browser tests, through selenium.

`missing_browser()` says why a browser test cannot run here (selenium, chromium or
chromedriver absent), or None; `start_chromium(profile_directory)` starts a fresh
headless Chromium with its own profile; `severe_console_errors(driver)` returns the
page's SEVERE console entries, and fails (ConsoleUnreadable) when the driver cannot read
the console: a check that cannot look must not pass.

    from tests.e2e.browser import missing_browser, start_chromium

    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    driver = start_chromium(tmp_path / "profile")
    try:
        driver.get(url)
    finally:
        driver.quit()
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
)
"""Headless, no sandbox (containers run as root), and no calls to any outside service."""


def _first_executable(environment_name: str, candidates: tuple[str, ...], name: str) -> str | None:
    configured = os.environ.get(environment_name)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which(name)


def chromium_path() -> str | None:
    """Chromium's binary: $CHROMIUM_BINARY, a Debian path, or `chromium` on PATH."""
    return _first_executable("CHROMIUM_BINARY", CHROMIUM_CANDIDATES, "chromium")


def chromedriver_path() -> str | None:
    """chromedriver: $CHROMEDRIVER, a Debian path, or `chromedriver` on PATH."""
    return _first_executable("CHROMEDRIVER", CHROMEDRIVER_CANDIDATES, "chromedriver")


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if chromium_path() is None:
        return "chromium is not installed (apt-get install chromium; .ci/run does it)"
    if chromedriver_path() is None:
        return "chromedriver is not installed (apt-get install chromium-driver; .ci/run does it)"
    return None


def start_chromium(profile_directory: Path, window: tuple[int, int] | None = None) -> WebDriver:
    """A fresh headless Chromium with its own profile and the browser console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    binary = chromium_path()
    assert binary is not None, missing_browser()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile_directory.mkdir(parents=True, exist_ok=True)
    options.add_argument(f"--user-data-dir={profile_directory}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(chromedriver_path()))
    if window is not None:
        driver.set_window_size(*window)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    return driver


class ConsoleUnreadable(AssertionError):
    """The driver cannot read the browser console, so no console check can pass."""


def console_entries(driver: WebDriver) -> list[dict[str, Any]]:
    """The browser console since the last call; ConsoleUnreadable if this driver cannot read it."""
    try:
        entries = driver.get_log("browser")
    except Exception as error:  # noqa: BLE001 - drivers without the log endpoint raise various errors
        raise ConsoleUnreadable(f"cannot read the browser console: {error!r}") from error
    if not isinstance(entries, list):
        raise ConsoleUnreadable(f"the browser console read gave {type(entries).__name__}, not a list")
    return entries


def severe_console_errors(driver: WebDriver) -> list[str]:
    """Messages of SEVERE console entries since the last read (ConsoleUnreadable if it cannot be read)."""
    return [entry.get("message", "") for entry in console_entries(driver) if entry.get("level") == "SEVERE"]
