"""`pokemon-diffusion app`: a local web page that shows the denoising live.

Example::

    pokemon-diffusion app                       # the shipped reference model, http://127.0.0.1:7860
    pokemon-diffusion app --run runs/r1 --port 8000
"""

from __future__ import annotations

import logging
import signal

from ..errors import ConfigError, require_extra
from ..cli_args import int_range

log = logging.getLogger(__name__)

SHIPPED_MODELS = ("reference",)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "app", help="a local web page that streams the denoising live",
        description="Serve a web page (Gradio) where you type a prompt and watch x_t and the model's "
                    "estimate of the clean image change while it samples, then download the grid (PNG) "
                    "and the denoising (GIF). Local and offline: binds 127.0.0.1 unless --host says "
                    "otherwise, no analytics, no share link.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", metavar="RUN", default=None,
                        help="run folder written by `train`, or hf://OWNER/REPO[@REVISION] on the Hugging Face Hub")
    source.add_argument("--model", metavar="NAME", default=None,
                        help="a shipped model (reference) or a folder made by export_pretrained "
                             "(default: the shipped reference model)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: %(default)s; 0.0.0.0 exposes the page to your network)")
    parser.add_argument("--port", type=int_range(1, 65535), default=7860, help="port (default: %(default)s)")
    parser.add_argument("--text-encoder", metavar="SPEC", default=None,
                        help="where to load the run's text encoder from (default: the identity the run saved)")
    parser.set_defaults(func=run)
    return parser


def load_session(run_dir=None, model=None, text_encoder=None):
    """The run and its encoder, loaded once (an AppSession).

    Raises:
        CheckpointError, EncoderError: the run or its encoder cannot be loaded.
        ConfigError: an unknown --model name.
    """
    from ..app.session import AppSession
    from ..config import SampleConfig
    from ..text.registry import load_encoder_matching

    precision = SampleConfig().mixed_precision  # bfloat16 where native: the app only samples

    if run_dir is not None:
        from ..run_dir import load_run

        loaded, label = load_run(run_dir, mixed_precision=precision), str(run_dir)
    else:
        from pathlib import Path

        from ..pretrained import load_pretrained

        if model in (None, *SHIPPED_MODELS):
            loaded, label = load_pretrained(mixed_precision=precision), "shipped reference model"
        elif Path(model).is_dir():
            loaded, label = load_pretrained(model, mixed_precision=precision), str(model)
        else:
            raise ConfigError(f"--model {model!r}: allowed: {' | '.join(SHIPPED_MODELS)}, or a folder made by "
                              "export_pretrained (use --run for a training run folder)")
    encoder = load_encoder_matching(loaded.encoder, text_encoder)
    return AppSession(loaded, encoder, label=label)


def _stop(signum, frame):
    raise KeyboardInterrupt  # Gradio closes its server on this; our finally removes the files


def run(args) -> int:
    require_extra(("gradio",), extra="app", what="pokemon-diffusion app")
    session = load_session(args.run, args.model, args.text_encoder)
    # SIGTERM (a service manager, `kill`) stops the page as Ctrl+C does, files removed
    signal.signal(signal.SIGTERM, _stop)
    try:
        return _serve(session, args.host, args.port)
    finally:
        session.close()


def _serve(session, host: str, port: int) -> int:
    """Bind, then say where the page is (never before: a taken port gets one error line only), then wait."""
    import time

    from ..app.ui import launch

    log.info("sampler compiled in %.1f s", session.warm_up())
    try:
        blocks = launch(session, host, port, block=False)  # returns once the server listens
    except OSError as exc:  # the port is taken, or the host is not this machine's
        raise ConfigError(f"--host {host} --port {port}: cannot serve there: {exc}") from None
    try:
        log.info("serving %s on http://%s:%d (Ctrl+C to stop)", session.label, host, port)
        while getattr(blocks, "is_running", True):
            time.sleep(0.2)  # Ctrl+C or SIGTERM (``_stop``) raises KeyboardInterrupt here
    finally:
        blocks.close()
    return 0
