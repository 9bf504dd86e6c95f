"""The app's screenshot mid-generation, and its latency, with the shipped reference model in a real browser.

    .venv/bin/python docs/make_app_screenshot.py              # docs/images/app_midgeneration.png
    .venv/bin/python docs/make_app_screenshot.py --measure 3  # + click -> first frame / final image, 3 runs

Serves the page on a free port of 127.0.0.1 (reference model, packaged MiniLM encoder), opens it
in Debian's headless Chromium, types a prompt, presses Generate and takes the screenshot once the
status says the run is between 45 % and 75 % of its steps (retrying with the next seed if a frame
was missed). ``--measure N`` then times N one-image DDIM-50 runs from the click (the first one
includes tracing) and prints them as JSON, with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
from pathlib import Path

from pokemon_diffusion.app.browser import Chromium, browser_missing
from pokemon_diffusion.app.ui import launch
from pokemon_diffusion.commands.app import load_session
from pokemon_diffusion.logging_utils import setup_logging

IMAGES = Path(__file__).resolve().parent / "images"
PROMPT = "a fire-type dragon Pokémon"
STEP = re.compile(r"step (\d+)/(\d+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_slider_number(page: Chromium, label: str, value: int) -> None:
    """Type into the number box beside a Gradio slider (found by its label)."""
    page.driver.execute_script("""
        const block = [...document.querySelectorAll('.block')].find(b => b.innerText.startsWith(arguments[0]));
        const box = block.querySelector('input[type=number]');
        box.value = arguments[1]; box.dispatchEvent(new Event('input', {bubbles: true}));
        box.dispatchEvent(new Event('change', {bubbles: true})); box.blur();""", label, str(value))


def midway(page: Chromium) -> bool:
    found = STEP.search(page.text("#status"))
    return bool(found) and 0.45 <= int(found.group(1)) / int(found.group(2)) <= 0.75


def screenshot(page: Chromium, out: Path, num: int, tries: int = 5) -> str:
    set_slider_number(page, "Images", num)
    for seed in range(tries):
        page.type_into("prompt", PROMPT)
        page.type_into("seed", str(seed))
        page.click("generate")
        page.wait(lambda: midway(page) or "done:" in page.text("#status"), 300, "no frame")
        if midway(page):
            page.driver.execute_script("window.scrollTo(0, 0)")
            page.screenshot(out)
            status = page.text("#status")
            page.wait(lambda: "done:" in page.text("#status"), 300, "the run never finished")
            if STEP.search(status):
                return status
        page.wait(lambda: "done:" in page.text("#status"), 300, "the run never finished")
    raise RuntimeError(f"no mid-way frame caught in {tries} runs")


def measure(page: Chromium, runs: int) -> list:
    set_slider_number(page, "Images", 1)
    set_slider_number(page, "Steps (DDIM)", 50)
    times = []
    for seed in range(runs):
        page.type_into("seed", str(100 + seed))
        page.click("generate")
        page.wait(lambda: "done:" in page.text("#status"), 300, "the run never finished")
        initial = page.recorded()[0]
        page.wait(lambda: any(e["result"] != initial["result"] for e in page.recorded()), 60, "no result image")
        log = page.recorded()
        # a frame is on the page when its picture has replaced the one shown at the click
        first = next(e["at"] for e in log if e["x_t"] != initial["x_t"])
        final = next(e["at"] for e in log if e["result"] != initial["result"])
        times.append({"seed": 100 + seed, "first_frame_s": round(first / 1000, 3),
                      "final_image_s": round(final / 1000, 3)})
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=IMAGES / "app_midgeneration.png")
    parser.add_argument("--num", type=int, default=4, help="images in the screenshot's run")
    parser.add_argument("--measure", type=int, default=0, metavar="N", help="also time N one-image DDIM-50 runs")
    args = parser.parse_args()
    setup_logging(0)
    missing = browser_missing()
    if missing:
        raise SystemExit(f"no browser: {missing}")
    session = load_session()
    session.warm_up()
    port = free_port()
    blocks = launch(session, "127.0.0.1", port, block=False)
    try:
        with Chromium(width=1400, height=1150) as page:
            page.open(f"http://127.0.0.1:{port}/")
            report = {"screenshot": str(args.out), "status_at_screenshot": screenshot(page, args.out, args.num)}
            if args.measure:
                report["runs"] = measure(page, args.measure)
            report["load_average"] = [round(x, 2) for x in os.getloadavg()]
            report["cpu_count"] = os.cpu_count()
            print(json.dumps(report, indent=2))
    finally:
        blocks.close()
        session.close()
        logging.shutdown()


if __name__ == "__main__":
    main()
