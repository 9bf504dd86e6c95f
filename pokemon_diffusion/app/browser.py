"""Headless Chromium (Debian's, through Selenium) for the page's tests and its screenshot.

Nothing downloads a browser or a driver: both come from Debian (``apt-get install chromium
chromium-driver``), and Selenium is given their paths, so its driver manager never runs. The
browser reaches only this machine: every host name resolves to nothing, and the page is opened
by IP. A recorder script notes every change of the live pictures and the status with its time,
so a test sees frames that come faster than it could poll.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

CHROMIUM = os.environ.get("POKEMON_DIFFUSION_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("POKEMON_DIFFUSION_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1")

# Runs in the page: one entry per change of what the live view shows, timed with performance.now().
RECORDER_JS = """
window.__pd_observer?.disconnect();
const read = () => ({
  x_t: document.querySelector('#x_t img')?.src || null,
  x0: document.querySelector('#x0 img')?.src || null,
  result: document.querySelector('#result img')?.src || null,
  status: document.querySelector('#status')?.innerText || '',
});
window.__pd_t0 = performance.now();
window.__pd_log = [{...read(), at: window.__pd_t0}];
let last = JSON.stringify(read());
window.__pd_observer = new MutationObserver(() => {
  const now = read(), key = JSON.stringify(now);
  if (key !== last) { last = key; window.__pd_log.push({...now, at: performance.now()}); }
});
window.__pd_observer.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
"""


def browser_missing() -> Optional[str]:
    """Why the browser cannot run here (None when it can)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} not found: apt-get install -y {package} (or `make browser`)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -r requirements.txt)"
    return None


class Chromium:
    """A headless Chromium with a fresh profile, closed (profile removed) by :meth:`close`.

    Args:
        width, height: the window, in CSS pixels (what a screenshot shows).
    """

    def __init__(self, width: int = 1400, height: int = 1000) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="pd-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the page --------------------------------------------------------------------------

    def open(self, url: str, timeout: float = 60.0) -> None:
        """Load ``url`` and wait until the Generate button is on the page."""
        self.driver.get(url)
        self.wait(lambda: self.driver.execute_script("return !!document.querySelector('#generate')"),
                  timeout, "the page never showed its Generate button")

    def wait(self, predicate: Callable[[], Any], timeout: float, message: str, every: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(every)
        raise TimeoutError(f"{message} (waited {timeout:.0f} s)")

    def type_into(self, elem_id: str, text: str) -> None:
        """Replace the text of the textbox inside ``#elem_id``."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        box = self.driver.find_element(By.CSS_SELECTOR, f"#{elem_id} textarea, #{elem_id} input")
        box.click()
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE)
        if text:
            box.send_keys(text)

    def click(self, elem_id: str) -> None:
        """Start the recorder, then click ``#elem_id`` (the recorder's clock starts at the click)."""
        from selenium.webdriver.common.by import By

        self.driver.execute_script(RECORDER_JS)
        self.driver.find_element(By.CSS_SELECTOR, f"#{elem_id}").click()

    def recorded(self) -> List[Dict[str, Any]]:
        """What the recorder saw: the state at the click, then each change, ``at`` in ms after the click."""
        return self.driver.execute_script(
            "return (window.__pd_log || []).map(e => ({...e, at: e.at - window.__pd_t0}))")

    def text(self, css: str) -> str:
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText).join('\\n')", css)

    def links(self, css: str) -> List[str]:
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0] + ' a')).map(a => a.href)", css)

    def requested_urls(self) -> List[str]:
        """Every URL the browser asked for (from the DevTools network log), in order."""
        import json

        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    def screenshot(self, path: os.PathLike) -> Path:
        from ..atomic import atomic_write_bytes

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_bytes(path, self.driver.get_screenshot_as_png())
