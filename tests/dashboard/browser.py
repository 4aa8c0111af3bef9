"""Headless Debian chromium driven through Selenium, with bounded waits on data-testid elements.

Only 127.0.0.1 is ever loaded: the dashboard the daemon serves. Nothing asserts on pixels; the
screenshots are for people (the test's tmp dir and docs/screenshots/ for the README).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.sidecar import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH, HEIGHT = 1200, 800
WAIT = 15.0  # every wait is bounded: a missing element fails the test, it never hangs it
SCREENSHOTS = ROOT / "docs" / "screenshots"
T = TypeVar("T")


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def start_chromium() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={WIDTH},{HEIGHT}",
        # nothing but the daemon on 127.0.0.1: no updates, sync, metrics or other background traffic
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--metrics-recording-only",
        "--proxy-server=direct://",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


def css(testid: str) -> str:
    return f'[data-testid="{testid}"]'


class Browser:
    """One chromium for the session; a test opens its page with ``open``."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    # --- navigation -------------------------------------------------------------------------

    def open(self, url: str) -> None:
        """Load the page afresh (a new document: sessionStorage survives, page state does not)."""
        self.driver.get("about:blank")
        self.driver.get(url)

    def go(self, hash_route: str) -> None:
        """Change the route in the loaded page (what a click on a link does)."""
        self.driver.execute_script("location.hash = arguments[0]", hash_route)

    @property
    def url(self) -> str:
        return str(self.driver.current_url)

    # --- waiting ---------------------------------------------------------------------------

    def until(self, condition: Callable[[], T | None], what: str, timeout: float = WAIT) -> T:
        def check(_: Any) -> T | None:
            try:
                return condition()
            except (NoSuchElementException, StaleElementReferenceException):
                return None

        try:
            found = WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(check)
        except WebDriverException as exc:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; page: {self.page_text()[:1500]}"
            ) from exc
        assert found is not None  # until() returns only a truthy answer
        return found

    def find(self, testid: str, within: WebElement | None = None) -> WebElement:
        return (within or self.driver).find_element(By.CSS_SELECTOR, css(testid))

    def find_all(self, testid: str, within: WebElement | None = None) -> list[WebElement]:
        return list((within or self.driver).find_elements(By.CSS_SELECTOR, css(testid)))

    def present(self, testid: str) -> bool:
        return bool(self.find_all(testid))

    def wait(self, testid: str, timeout: float = WAIT) -> WebElement:
        """The element, once it is in the page and visible."""

        def visible() -> WebElement | None:
            element = self.find(testid)
            return element if element.is_displayed() else None

        return self.until(visible, f"[data-testid={testid}]", timeout)

    def wait_css(self, selector: str, timeout: float = WAIT) -> WebElement:
        def visible() -> WebElement | None:
            element = self.driver.find_element(By.CSS_SELECTOR, selector)
            return element if element.is_displayed() else None

        return self.until(visible, selector, timeout)

    def wait_text(self, testid: str, text: str, timeout: float = WAIT) -> WebElement:
        """The element, once its text contains ``text``."""

        def has_text() -> WebElement | None:
            element = self.find(testid)
            return element if text in element.text else None

        return self.until(has_text, f"{text!r} in [data-testid={testid}]", timeout)

    def wait_gone(self, testid: str, timeout: float = WAIT) -> None:
        self.until(lambda: not self.present(testid) or None, f"[data-testid={testid}] to go", timeout)

    def text(self, testid: str) -> str:
        return str(self.find(testid).text)

    def page_text(self) -> str:
        try:
            return str(self.driver.find_element(By.TAG_NAME, "body").text)
        except WebDriverException:
            return ""

    # --- acting ----------------------------------------------------------------------------

    def click(self, testid: str, within: WebElement | None = None) -> None:
        element = self.find(testid, within) if within is not None else self.wait(testid)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()

    def fill(self, testid: str, value: str) -> None:
        element = self.wait(testid)
        element.clear()
        if value:
            element.send_keys(value)

    def choose(self, testid: str, value: str) -> None:
        Select(self.wait(testid)).select_by_value(value)

    # --- evidence --------------------------------------------------------------------------

    def console_problems(self) -> list[str]:
        """Console entries that mean the page is broken: script errors and CSP violations.
        (Chromium also logs every non-2xx fetch; those are the API answering, not problems.)"""
        problems = []
        for entry in self.driver.get_log("browser"):
            message = str(entry.get("message", ""))
            if "Content Security Policy" in message or "Uncaught" in message or "SyntaxError" in message:
                problems.append(message)
        return problems

    def screenshot(self, name: str, tmp_dir: Path, at: str | None = None) -> Path:
        """The viewport as PNG in the test's tmp dir, scrolled to the top of the page or to the
        element ``at`` names; also in docs/screenshots/<name>.png (the README's) when
        DUNETRACE_SCREENSHOTS=1 (`make screenshots`), so a test run leaves the tree clean."""
        self.driver.set_window_size(WIDTH, HEIGHT)
        if at is None:
            self.driver.execute_script("window.scrollTo(0, 0)")
        else:
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", self.find(at))
        shot = tmp_dir / f"{name}.png"
        assert self.driver.save_screenshot(str(shot)), name
        if os.environ.get("DUNETRACE_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, SCREENSHOTS / f"{name}.png")
        return shot
