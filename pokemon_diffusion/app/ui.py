"""The Gradio page: prompt and sampler fields, x_t and x̂_0 updating live, then the grid and its files.

Offline and private by default: analytics off (the environment variable and the Blocks flag), no
share link, the theme's fonts served by the app itself, bound to 127.0.0.1 unless told otherwise.
Requests run one at a time through Gradio's queue (sampling uses every core anyway).
"""

from __future__ import annotations

import html
import logging
import os
from typing import Iterator, Optional

from ..errors import PokemonDiffusionError
from .session import EXAMPLE_PROMPTS, MAX_GUIDANCE, MAX_IMAGES, AppSession

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
BUTTONS = ["download", "fullscreen"]  # not "share": that one posts to the Hugging Face hub
QUEUE_SIZE = 16  # requests waiting at most; the next one is refused with a message
API_NAME = "generate"
# element ids the browser test and the screenshot find things by
IDS = dict(prompt="prompt", negative="negative", seed="seed", enrich="enrich", size="size", generate="generate",
           status="status", x_t="x_t", x0="x0", result="result", files="files")


def _quiet_gradio() -> None:
    """No telemetry: Gradio reads this before sending anything (its version check included)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


def _shown(text: str) -> str:
    """A message as text on the page: Gradio renders an error's message as HTML, and a bad field's
    value is quoted in it (``<img ...>``, ``<a href>`` must show as typed, not become markup).
    Only ``& < >`` are escaped: the toast is element content, and quotes stay readable to API clients."""
    return html.escape(text, quote=False)


def make_handler(session: AppSession):
    """The generator the Generate button runs: checked fields in, (x_t, x̂_0, status, grid, files) out."""
    import gradio as gr

    def generate(prompt, num, sampler, steps, guidance, seed, enrich=True, negative="", size=None) -> Iterator[tuple]:
        try:
            request = session.parse(prompt, num, sampler, steps, guidance, seed, enrich, negative, size)
        except PokemonDiffusionError as exc:
            raise gr.Error(_shown(str(exc)), title="Not generated", print_exception=False) from None
        try:
            for update in session.stream(request):
                if update.done:
                    files = [str(update.grid_png), str(update.gif)]
                    yield update.x_t, update.x0, update.status(), str(update.grid_png), files
                else:
                    # leave the previous result and its files as they are until this one is ready
                    yield update.x_t, update.x0, update.status(), gr.skip(), gr.skip()
        except PokemonDiffusionError as exc:
            raise gr.Error(_shown(str(exc)), title="Not generated", print_exception=False) from None
        except Exception as exc:  # a bug: a short message on the page, the traceback in the log
            log.exception("generation failed")
            raise gr.Error(_shown(f"generation failed: {type(exc).__name__}: {exc}"), print_exception=False) from None

    return generate


def build_blocks(session: AppSession):
    """The page, wired to ``session`` (queue set up, not launched)."""
    _quiet_gradio()
    import gradio as gr

    with gr.Blocks(title="pokemon-diffusion", analytics_enabled=False) as blocks:
        sizes = " → ".join(f"{s}×{s}" for s in session.sizes)
        cascade = (" (a cascade: the base, then each upsampler stage, all shown live)"
                   if len(session.sizes) > 1 else "")
        gr.Markdown(f"## Watch a Pokémon appear\nModel: `{session.label}` · {sizes}{cascade} · "
                    f"T = {session.timesteps}. The left picture is the noisy state x_t, the right one "
                    "the model's current guess x̂₀ of the finished image.")
        with gr.Row():
            with gr.Column(scale=1):
                prompt = gr.Textbox(label="Prompt", value=EXAMPLE_PROMPTS[0], lines=2, max_lines=4,
                                    elem_id=IDS["prompt"])
                gr.Examples(examples=[[p] for p in EXAMPLE_PROMPTS], inputs=[prompt], label="Examples")
                negative = gr.Textbox(label="Negative prompt (optional: guidance steps away from it)", value="",
                                      lines=1, max_lines=2, placeholder="e.g. blurry, dark", elem_id=IDS["negative"])
                with gr.Row():
                    num = gr.Slider(1, MAX_IMAGES, value=1, step=1, label="Images")
                    sampler = gr.Radio([("DDIM", "ddim"), ("DDPM (all T steps)", "ddpm")], value="ddim",
                                       label="Sampler")
                with gr.Row():
                    steps = gr.Slider(1, session.timesteps, value=session.default_steps, step=1,
                                      label="Steps (DDIM)")
                    guidance = gr.Slider(0.0, MAX_GUIDANCE, value=3.0, step=0.5, label="Guidance")
                with gr.Row():
                    seed = gr.Textbox(label="Seed (blank = random)", value="", placeholder="random",
                                      elem_id=IDS["seed"])
                    size = gr.Dropdown([(f"{s}×{s}", s) for s in session.sizes], value=session.default_size,
                                       label="Size", interactive=len(session.sizes) > 1, elem_id=IDS["size"])
                enrich = gr.Checkbox(value=True, label="Describe named Pokémon (\"Pikachu\" -> the model's "
                                                       "description of Pikachu)", elem_id=IDS["enrich"])
                button = gr.Button("Generate", variant="primary", elem_id=IDS["generate"])
            with gr.Column(scale=2):
                status = gr.Markdown("Ready.", elem_id=IDS["status"])
                with gr.Row():
                    x_t = gr.Image(label="x_t (noisy state)", format="png", interactive=False,
                                   buttons=BUTTONS, elem_id=IDS["x_t"])
                    x0 = gr.Image(label="x̂₀ (model's guess)", format="png", interactive=False,
                                  buttons=BUTTONS, elem_id=IDS["x0"])
                result = gr.Image(label="Result", type="filepath", format="png", interactive=False,
                                  buttons=BUTTONS, elem_id=IDS["result"])
                files = gr.File(label="Downloads (PNG grid, denoising GIF)", file_count="multiple",
                                interactive=False, elem_id=IDS["files"])
        inputs = [prompt, num, sampler, steps, guidance, seed, enrich, negative, size]
        outputs = [x_t, x0, status, result, files]
        handler = make_handler(session)
        # preprocess=False: the raw values reach parse_request, whose messages name the field
        # (Gradio's own range check would answer "Value 500 is greater than maximum value 20.")
        events = dict(show_progress="minimal", show_progress_on=[status], preprocess=False)
        button.click(handler, inputs, outputs, api_name=API_NAME, **events)
        prompt.submit(handler, inputs, outputs, api_name=False, **events)
    blocks.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return blocks


def launch(session: AppSession, host: str = DEFAULT_HOST, port: Optional[int] = DEFAULT_PORT, *,
           block: bool = True):
    """Serve the page on ``host:port``; with ``block`` False, return the running Blocks (``.close()`` it).

    Returns:
        The Blocks; ``blocks.local_url`` is the page's address.
    """
    blocks = build_blocks(session)
    blocks.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=False,
                  prevent_thread_lock=not block, quiet=True, ssr_mode=False, pwa=False, mcp_server=False,
                  enable_monitoring=False)
    return blocks
