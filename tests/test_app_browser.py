"""The page in a real browser: Debian's headless Chromium, driven by Selenium, on the tiny run.

Skipped, with the reason, when Chromium or its driver is not installed (`make browser` installs
them); the HTTP-level tests in test_app.py run regardless.
"""

import urllib.request
import warnings

import pytest

from pokemon_diffusion.app.browser import Chromium, browser_missing
from test_app import server, tiny_session  # noqa: F401  (fixtures)

MISSING = browser_missing()
if MISSING:  # shown in pytest's warnings summary, so the skip is seen without -rs
    warnings.warn(f"the browser tests are skipped: {MISSING}", stacklevel=1)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(MISSING is not None, reason=f"no browser: {MISSING}"),
    pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*"),
]


@pytest.fixture(scope="module")
def page(server):  # noqa: F811  (the fixture imported above)
    with Chromium() as browser:
        browser.open(server)
        yield browser


def test_pressing_generate_shows_the_denoising_live_then_the_result(page, tiny_session):  # noqa: F811
    page.type_into("prompt", "a fire dragon Pokémon")
    page.type_into("seed", "7")
    page.type_into("negative", "a dark blurry Pokémon")  # the optional negative prompt reaches the sampler
    page.click("generate")
    page.wait(lambda: ".gif" in " ".join(page.links("#files")), 120, "the GIF download never appeared")
    initial, *log = page.recorded()
    first_result = next(i for i, e in enumerate(log) if e["result"] != initial["result"])
    # at least three different x_t pictures, and as many x̂_0 ones, before the final image
    before = [e for e in log[:first_result] if e["status"].startswith("sampling")]
    assert len({e["x_t"] for e in before} - {initial["x_t"], None}) >= 3, before
    assert len({e["x0"] for e in before} - {initial["x0"], None}) >= 3, before
    status = page.text("#status")
    assert "done: 20 steps" in status and "seed 7" in status
    assert tiny_session.encoder.seen[-2:] == ["a fire dragon Pokémon", "a dark blurry Pokémon"]
    links = page.links("#files")
    assert sorted(link.rsplit(".", 1)[-1] for link in links) == ["gif", "png"]
    png = next(link for link in links if link.endswith(".png"))
    with urllib.request.urlopen(png, timeout=30) as response:
        assert response.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("field, value, message", [
    ("seed", "abc", "Seed: got 'abc'; allowed: an integer from 0 to 2147483647"),
    ("prompt", "", "Prompt: got ''; allowed: a non-empty description"),
])
def test_a_bad_value_is_refused_on_the_page(page, field, value, message):
    page.type_into("prompt", "a fire dragon Pokémon")
    page.type_into("seed", "")
    page.type_into(field, value)
    page.click("generate")
    page.wait(lambda: message in page.text("body"), 60, f"no message {message!r} on the page")
    assert not any(e["status"].startswith("sampling") for e in page.recorded())  # nothing was sampled
    page.driver.execute_script("document.querySelectorAll('.toast-close').forEach(b => b.click())")


def test_the_browser_asked_only_this_machine_for_anything(page):
    urls = [u for u in page.requested_urls() if u.startswith(("http:", "https:", "ws:", "wss:"))]
    assert urls and all(u.split("/")[2].split(":")[0] in ("127.0.0.1", "localhost") for u in urls), urls
