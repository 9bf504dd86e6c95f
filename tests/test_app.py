"""The web app without a browser: request checks, the frame stream, the page's HTTP API and the CLI.

The app runs in this process on a tiny run folder (16x16, T = 20) with the hash stand-in encoder
of test_sample_cli, on a free port of 127.0.0.1; the page's API is driven with gradio_client.
"""

import logging
import socket

import numpy as np
import pytest
from PIL import Image

from pokemon_diffusion.app.session import MAX_IMAGES, AppSession, parse_request
from pokemon_diffusion.cli import main
from pokemon_diffusion.errors import ConfigError
from pokemon_diffusion.run_dir import load_run
from test_sample_cli import HashEncoder, make_run

T = 20  # the tiny run's schedule
# gradio's queue calls pandas options that pandas 3 deprecates; not this project's to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")


@pytest.fixture(scope="module")
def tiny_session(tmp_path_factory):
    session = AppSession(load_run(make_run(tmp_path_factory.mktemp("app_run"))), HashEncoder(), label="tiny run")
    yield session
    session.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_session):
    """The page served on 127.0.0.1; yields its URL."""
    from pokemon_diffusion.app.ui import launch

    port = free_port()
    blocks = launch(tiny_session, "127.0.0.1", port, block=False)
    yield f"http://127.0.0.1:{port}/"
    blocks.close()


# ---- the request checks -----------------------------------------------------------------------

def test_a_good_request_is_parsed_from_form_values():
    request = parse_request("  a fire dragon ", 2.0, "DDIM", "12", 3, " 42 ", timesteps=T)
    assert (request.prompt, request.num, request.sampler, request.steps, request.guidance, request.seed) == \
        ("a fire dragon", 2, "ddim", 12, 3.0, 42)
    assert parse_request("x", 1, "ddim", 5, 0, "", timesteps=T).seed is None  # blank: random
    assert parse_request("x", 1, "ddpm", 3, 1, None, timesteps=T).steps == T  # DDPM runs all T steps


@pytest.mark.parametrize("fields, message", [
    (dict(prompt="   "), "Prompt: got '   '; allowed: a non-empty description"),
    (dict(prompt="x" * 301), "Prompt: got 301 characters; allowed: at most 300"),
    (dict(num=0), f"Images: got 0; allowed: an integer from 1 to {MAX_IMAGES}"),
    (dict(num=2.5), "Images: got 2.5"),
    (dict(sampler="euler"), "Sampler: got 'euler'; allowed: DDIM | DDPM"),
    (dict(steps=T + 1), f"Steps: got 21; allowed: an integer from 1 to {T}"),
    (dict(guidance=float("nan")), "Guidance: got nan; allowed: a number from 0 to 20"),
    (dict(guidance=25), "Guidance: got 25"),
    (dict(seed="abc"), "Seed: got 'abc'; allowed: an integer from 0 to 2147483647"),
    (dict(seed="-1"), "Seed: got '-1'"),
])
def test_bad_fields_are_refused_naming_the_field(fields, message):
    values = dict(prompt="a fire dragon", num=1, sampler="ddim", steps=10, guidance=3.0, seed="")
    values.update(fields)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_request(*values.values(), timesteps=T)


def test_the_negative_prompt_is_optional_and_checked():
    assert parse_request("x", 1, "ddim", 5, 3, "", timesteps=T).negative_prompt is None
    for blank in ("", "   ", None):
        assert parse_request("x", 1, "ddim", 5, 3, "", timesteps=T, negative=blank).negative_prompt is None
    assert parse_request("x", 1, "ddim", 5, 3, "", timesteps=T, negative=" blurry ").negative_prompt == "blurry"
    with pytest.raises(ConfigError, match="Negative prompt: got 301 characters; allowed: at most 300"):
        parse_request("x", 1, "ddim", 5, 3, "", timesteps=T, negative="n" * 301)
    with pytest.raises(ConfigError, match="Negative prompt: got 5; allowed: a text, or blank for none"):
        parse_request("x", 1, "ddim", 5, 3, "", timesteps=T, negative=5)


def test_the_stream_guides_away_from_the_negative_prompt_without_a_new_trace(tiny_session):
    from pokemon_diffusion.diffusion.compiled import tracing_count

    plain = list(tiny_session.stream(tiny_session.parse("a ghost", 1, "ddim", 3, 3.0, "2")))[-1]
    traced = tracing_count(tiny_session.run.model)
    seen = len(tiny_session.encoder.seen)
    negative = list(tiny_session.stream(tiny_session.parse("a ghost", 1, "ddim", 3, 3.0, "2", True, "blurry")))[-1]
    assert tiny_session.encoder.seen[seen:] == ["a ghost", "blurry"]
    assert not np.array_equal(plain.x_t, negative.x_t)
    assert tracing_count(tiny_session.run.model) == traced  # the null condition is an input of the same loop


# ---- the stream --------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_stream_shows_changing_frames_then_writes_the_grid_and_gif(tiny_session):
    request = tiny_session.parse("a fire dragon", 2, "ddim", 20, 3.0, "5")
    updates = list(tiny_session.stream(request))
    live, last = updates[:-1], updates[-1]
    assert [u.step for u in live] == [2, 4, 6, 8, 10, 12, 14, 16, 18] and not any(u.done for u in live)
    assert len({u.x_t.tobytes() for u in live}) == len(live)  # every frame differs from the others
    assert live[0].x_t.dtype == np.uint8 and live[0].x_t.shape[-1] == 3 and live[0].x0.shape == live[0].x_t.shape
    assert last.done and last.step == 20 and last.seed == 5 and "seed 5" in last.status()
    with Image.open(last.grid_png) as png, Image.open(last.gif) as gif:
        assert png.format == "PNG" and gif.format == "GIF" and gif.n_frames >= 10
    # the same seed gives the same pictures: what the page promises next to the seed
    again = list(tiny_session.stream(request))[-1]
    np.testing.assert_array_equal(again.x_t, last.x_t)
    assert not last.grid_png.exists() and again.grid_png.exists()  # only the latest request's files stay


@pytest.mark.slow
def test_warm_up_traces_the_default_request_so_the_first_click_does_not(tiny_session):
    from pokemon_diffusion.diffusion.compiled import tracing_count

    assert tiny_session.warm_up() > 0
    traced = tracing_count(tiny_session.run.model)
    request = tiny_session.parse("a ghost", 1, "ddim", 7, 4.5, "")
    assert list(tiny_session.stream(request))[-1].done
    assert tracing_count(tiny_session.run.model) == traced


# ---- the page's API over HTTP -----------------------------------------------------------------

@pytest.mark.slow
def test_the_api_streams_frames_and_refuses_bad_values(server):
    from gradio_client import Client

    client = Client(server, verbose=False)
    job = client.submit("a fire dragon", 1, "ddim", 20, 3.0, "7", api_name="/generate")
    job.result(timeout=120)
    outputs = job.outputs()
    live = [o for o in outputs if str(o[2]).startswith("sampling")]
    assert len({open(o[0], "rb").read() for o in live}) >= 3  # x_t changed at least three times
    final = outputs[-1]
    assert final[2].startswith("done: 20 steps") and "seed 7" in final[2]
    assert sorted(p.rsplit(".", 1)[-1] for p in final[4]) == ["gif", "png"]
    with pytest.raises(Exception, match="Steps: got 500; allowed: an integer from 1 to 20"):
        client.predict("a fire dragon", 1, "ddim", 500, 3.0, "", api_name="/generate")
    with pytest.raises(Exception, match="Prompt: got ''"):
        client.predict("", 1, "ddim", 5, 3.0, "", api_name="/generate")


@pytest.mark.slow
def test_the_page_is_local_and_sends_no_analytics(server):
    import json
    import urllib.request

    with urllib.request.urlopen(server + "config", timeout=30) as response:
        config = json.loads(response.read())
    assert config["analytics_enabled"] is False and not config.get("share_url")
    with urllib.request.urlopen(server, timeout=30) as response:
        page = response.read().decode()
    assert "fonts.googleapis" not in page and "Generate" in json.dumps(config)


# ---- the command line -------------------------------------------------------------------------

def test_app_is_a_subcommand_with_local_defaults(capsys, monkeypatch):
    with pytest.raises(SystemExit) as exit_info:
        main(["app", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--run RUN" in text and "--model NAME" in text and "127.0.0.1" in text and "7860" in text
    # the binding promise itself: what `app` with no flag hands to the server, not what the help says
    from pokemon_diffusion.cli import build_parser
    from pokemon_diffusion.commands import app as app_command
    from pokemon_diffusion.app import ui

    args = build_parser().parse_args(["app"])
    assert (args.host, args.port, args.run, args.model) == ("127.0.0.1", 7860, None, None)
    bound = {}

    class Session:
        label = "stand-in"

        def warm_up(self):
            return 0.0

        def close(self):
            pass

    def launch(session, host, port, block=True):
        bound.update(host=host, port=port, block=block)
        raise OSError("stop here")

    monkeypatch.setattr(app_command, "load_session", lambda *a: Session())
    monkeypatch.setattr(ui, "launch", launch)
    assert main(["app"]) == 2
    assert bound == dict(host="127.0.0.1", port=7860, block=False)
    assert ui.DEFAULT_HOST == "127.0.0.1"


def test_serving_is_logged_only_once_the_port_is_bound(tiny_session, caplog, monkeypatch):
    from pokemon_diffusion.commands.app import _serve

    monkeypatch.setattr(tiny_session, "warm_up", lambda: 0.0)  # compiling is not what this is about

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.INFO, "pokemon_diffusion.commands.app"), \
                pytest.raises(ConfigError, match=f"--host 127.0.0.1 --port {port}: cannot serve there"):
            _serve(tiny_session, "127.0.0.1", port)
    assert "serving" not in caplog.text


def test_an_error_message_is_shown_as_text_not_markup(tiny_session):
    import gradio as gr

    from pokemon_diffusion.app.ui import make_handler

    generate = make_handler(tiny_session)
    with pytest.raises(gr.Error) as info:
        next(generate("a <b>bold</b> dragon", 1, "ddim", 5, 3.0, '<img src=x onerror="alert(1)"><a href="//x">'))
    shown = info.value.message
    assert "<img" not in shown and "<a " not in shown and "<b>" not in shown
    assert """Seed: got '&lt;img src=x onerror="alert(1)"&gt;&lt;a href="//x"&gt;'""" in shown


def test_a_missing_run_or_model_is_one_error_line(tmp_path, capsys):
    assert main(["app", "--run", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: run folder not found")
    assert main(["app", "--model", "nonexistent"]) == 2
    assert "--model 'nonexistent': allowed: reference" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["app", "--port", "0"])  # argparse: 1 to 65535
    assert exit_info.value.code == 2 and "allowed: an integer from 1 to 65535" in capsys.readouterr().err
