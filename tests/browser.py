"""A real headless browser for the web-page tests: Debian's Chromium, driven by chromedriver.

No browser automation package is in the lock, and none is needed: chromedriver speaks the W3C
WebDriver protocol as JSON over HTTP, which `urllib` talks directly (a dozen endpoints). Nothing
is downloaded at run time except, once, the Debian packages themselves: `ensure_chromium()`
installs `chromium` and `chromium-driver` with apt-get when they are missing and we are root,
and otherwise says why the browser tests must be skipped.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"  # W3C WebDriver's element reference
APT_PACKAGES = ("chromium", "chromium-driver", "fonts-dejavu-core")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--hide-scrollbars",
    "--window-size=1280,900",
)


class BrowserUnavailable(RuntimeError):
    """Chromium or chromedriver is missing and cannot be installed here: skip, saying why."""


class WebDriverError(RuntimeError):
    pass


def ensure_chromium() -> tuple[str, str]:
    """(chromium, chromedriver) paths; apt-get installs them first when missing and root."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if all(found):
        return found  # type: ignore[return-value]
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise BrowserUnavailable("chromium / chromedriver are not installed and this is not "
                                 "root, so the test cannot apt-get install them: run "
                                 "`apt-get install chromium chromium-driver` once")
    if shutil.which("apt-get") is None:
        raise BrowserUnavailable("chromium / chromedriver are missing and there is no apt-get")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends",
               "-o", "DPkg::Lock::Timeout=300", *APT_PACKAGES]
    result = _apt(install)
    if result.returncode != 0:  # package lists may be missing on a fresh image
        _apt(["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=300"])
        result = _apt(install)
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if result.returncode != 0 or not all(found):
        raise BrowserUnavailable("apt-get install chromium chromium-driver failed: "
                                 + result.stdout[-600:])
    return found  # type: ignore[return-value]


def _apt(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900,
                          check=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Element:
    def __init__(self, browser: "Browser", element_id: str):
        self.browser, self.id = browser, element_id

    def send_keys(self, text: str) -> None:
        """For a file input: newline-separated absolute paths select those files."""
        self.browser.command("POST", f"/element/{self.id}/value", {"text": text})

    def click(self) -> None:
        self.browser.command("POST", f"/element/{self.id}/click", {})

    @property
    def text(self) -> str:
        return self.browser.command("GET", f"/element/{self.id}/text")

    def attribute(self, name: str) -> str | None:
        return self.browser.command("GET", f"/element/{self.id}/attribute/{name}")

    def find_all(self, css: str) -> list["Element"]:
        found = self.browser.command("POST", f"/element/{self.id}/elements",
                                     {"using": "css selector", "value": css})
        return [Element(self.browser, item[ELEMENT_KEY]) for item in found]

    def find(self, css: str) -> "Element":
        found = self.browser.command("POST", f"/element/{self.id}/element",
                                     {"using": "css selector", "value": css})
        return Element(self.browser, found[ELEMENT_KEY])


class Browser:
    """One chromedriver process and one Chromium session with a fresh profile."""

    def __init__(self, chromium: str, chromedriver: str, *, timeout_s: float = 30.0):
        self.timeout_s = timeout_s
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.port = free_port()
        self.driver = subprocess.Popen(
            [chromedriver, f"--port={self.port}", "--allowed-ips=127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        self.session = ""
        try:
            self._wait_for_driver()
            options = {"binary": chromium,
                       "args": [*CHROMIUM_FLAGS, f"--user-data-dir={self.profile}"]}
            capabilities = {"capabilities": {"alwaysMatch": {
                "browserName": "chrome", "goog:chromeOptions": options,
                "timeouts": {"script": int(timeout_s * 1000), "pageLoad": 30000}}}}
            self.session = self._request("POST", "/session", capabilities)["sessionId"]
        except BaseException:
            self.quit()
            raise

    # ------------------------------------------------------------------ protocol
    def _request(self, method: str, path: str, payload: dict | None = None):
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s + 30) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as error:
            value = json.loads(error.read() or b"{}").get("value", {})
            raise WebDriverError(f"{method} {path}: {value.get('error')}: "
                                 f"{str(value.get('message', ''))[:500]}") from None

    def command(self, method: str, path: str, payload: dict | None = None):
        return self._request(method, f"/session/{self.session}{path}", payload)

    def _wait_for_driver(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self._request("GET", "/status").get("ready"):
                    return
            except (OSError, WebDriverError):
                pass
            if self.driver.poll() is not None:
                raise BrowserUnavailable(f"chromedriver exited with {self.driver.returncode}")
            time.sleep(0.1)
        raise BrowserUnavailable("chromedriver did not become ready in 20 s")

    # ------------------------------------------------------------------ the few verbs tests use
    def get(self, url: str) -> None:
        self.command("POST", "/url", {"url": url})

    def find(self, css: str) -> Element:
        found = self.command("POST", "/element", {"using": "css selector", "value": css})
        return Element(self, found[ELEMENT_KEY])

    def find_all(self, css: str) -> list[Element]:
        found = self.command("POST", "/elements", {"using": "css selector", "value": css})
        return [Element(self, item[ELEMENT_KEY]) for item in found]

    def execute(self, script: str, *args):
        """Run `script` as a function body in the page; `return` gives the JSON result."""
        return self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait_for(self, script: str, *args, timeout_s: float | None = None):
        """Poll a page-side expression until it returns something truthy; return it."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            value = self.execute(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page condition not met in time: {script}")
            time.sleep(0.1)

    def set_window_size(self, width: int, height: int) -> None:
        self.command("POST", "/window/rect", {"width": width, "height": height})

    def screenshot(self, path: str | os.PathLike, *, full_page: bool = True) -> Path:
        """PNG of the page; full_page grows the window to the document's height first."""
        if full_page:  # from a normal window: scrollHeight is never below the viewport's
            self.set_window_size(1280, 900)
            height = self.execute("return document.documentElement.scrollHeight;")
            self.set_window_size(1280, min(int(height) + 140, 8000))
        data = base64.b64decode(self.command("GET", "/screenshot"))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def quit(self) -> None:
        if self.session:
            try:
                self.command("DELETE", "")
            except (OSError, WebDriverError):
                pass
            self.session = ""
        if self.driver.poll() is None:
            self.driver.terminate()
            try:
                self.driver.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.driver.kill()
        shutil.rmtree(self.profile, ignore_errors=True)
