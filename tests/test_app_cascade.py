"""The web app on a tiny cascade (16 -> 32): the size field, every stage streamed live with its status,
the final picture equal to sample_cascade's, and a real browser driving it (skipped without Chromium)."""

import json
import warnings

import numpy as np
import pytest

from pokemon_diffusion.app.browser import Chromium, browser_missing
from pokemon_diffusion.app.session import FRAMES_PER_RUN, AppSession, frame_picture
from pokemon_diffusion.config import SampleConfig
from pokemon_diffusion.diffusion.samplers import sample
from pokemon_diffusion.errors import ConfigError
from pokemon_diffusion.generate import prompt_annealing
from pokemon_diffusion.run_dir import load_run
from test_app import free_port
from test_cascade import DIM, tiny, write_run
from test_sample_cli import HashEncoder

pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("app_cascade")
    write_run(root / "base", tiny(), 0)
    write_run(root / "up32", tiny(image_size=32, low_res=16), 1)
    (root / "cascade.json").write_text(json.dumps({"base": "base", "stages": ["up32"], "stage_steps": 3}))
    session = AppSession(load_run(root), HashEncoder("test-encoder", DIM), label="tiny cascade")
    yield session
    session.close()


def test_the_size_field_offers_the_cascades_sizes_largest_by_default(session):
    assert session.sizes == [16, 32] and session.default_size == 32
    assert session.parse("x", 1, "ddim", 4, 3.0, "", size="").size == 32
    assert session.parse("x", 1, "ddim", 4, 3.0, "", size="16").size == 16
    assert session.parse("x", 1, "ddim", 4, 3.0, "", size=32.0).size == 32
    for bad in (64, "big", True):
        with pytest.raises(ConfigError, match=r"Size: got .*; allowed: 16 \| 32$"):
            session.parse("x", 1, "ddim", 4, 3.0, "", size=bad)


def test_every_stage_streams_live_and_the_end_is_sample_cascades_picture(session):
    request = session.parse("a fire dragon", 1, "ddim", 4, 3.0, "5")
    updates = list(session.stream(request))
    # a frame every ceil(4 / FRAMES_PER_RUN) = 1 step, the base's then the stage's
    assert [(u.stage, u.step, u.steps) for u in updates[:-1]] == [(0, 1, 4), (0, 2, 4), (0, 3, 4), (0, 4, 4),
                                                                  (1, 1, 3), (1, 2, 3)]
    assert "base (16×16) · step 1/4" in updates[0].status() and "upsampler 1/1 (32×32) · step 2/3" in updates[5].status()
    assert len({u.x_t.shape for u in updates}) == 1  # one picture size for the whole cascade
    last = updates[-1]
    assert last.done and last.steps == 7 and "done: 7 steps" in last.status() and "32×32" in last.status()
    embedding = HashEncoder("test-encoder", DIM).encode(["a fire dragon"])
    expected = sample(session.run, embedding, (1, 32, 32, 3), steps=4, seed=5, guidance_scale=3.0, progress=False,
                      num_intermediates=2 * FRAMES_PER_RUN,  # and sampling's default condition annealing
                      annealing=prompt_annealing(session.run, ["a fire dragon"], SampleConfig()))
    np.testing.assert_array_equal(last.x_t, frame_picture(expected.images))
    small = list(session.stream(session.parse("a fire dragon", 1, "ddim", 4, 3.0, "5", size=16)))
    assert {u.stages for u in small} == {0} and "upsampler" not in small[0].status()


@pytest.mark.slow
def test_a_browser_drives_the_cascade_to_its_largest_size(session):
    missing = browser_missing()
    if missing:
        warnings.warn(f"the browser test is skipped: {missing}", stacklevel=1)
        pytest.skip(f"no browser: {missing}")
    from pokemon_diffusion.app.ui import launch

    port = free_port()
    blocks = launch(session, "127.0.0.1", port, block=False)
    try:
        with Chromium() as page:
            page.open(f"http://127.0.0.1:{port}/")
            page.type_into("prompt", "a fire dragon Pokémon")
            page.type_into("seed", "3")
            page.click("generate")
            page.wait(lambda: ".gif" in " ".join(page.links("#files")), 180, "the GIF download never appeared")
            statuses = [e["status"] for e in page.recorded()]
            assert any("base (16×16)" in s for s in statuses), statuses
            assert any("upsampler 1/1 (32×32)" in s for s in statuses), statuses
            done = page.text("#status")
            steps = session.default_steps + session.run.stage_steps
            assert f"done: {steps} steps" in done and "32×32" in done and "seed 3" in done, done
    finally:
        blocks.close()
