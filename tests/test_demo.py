"""The end-to-end demo on a tiny budget: every stage for real, tiny sizes."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pokemon_diffusion.config import DiffusionConfig, ModelConfig, RunConfig, SampleConfig, TrainConfig
from pokemon_diffusion.demo import run_demo

TINY = RunConfig(model=ModelConfig(image_size=16, base_width=8, channel_mults=(1, 2), num_res_blocks=1),
                 diffusion=DiffusionConfig(timesteps=20),
                 train=TrainConfig(steps=3, batch_size=4, warmup_steps=1, checkpoint_every=2, eval_every=2,
                                   log_every=1, val_fraction=0.2))


@pytest.mark.slow
def test_demo_pipeline_writes_every_output_and_reuses_data(tmp_path, monkeypatch):
    # relative folders, as `make demo` passes them (issue 31: the second run failed to resume with them)
    monkeypatch.chdir(tmp_path)
    out, data = Path("outputs/demo"), Path("data/pokemon")
    kwargs = dict(data_dir=data, minutes=5, text_encoder="minilm", limit=6, run_config=TINY,
                  prompts=["Pikachu, an Electric-type Pokémon", "a fire-type dragon Pokémon"],
                  sample_config=SampleConfig(steps=4, num_intermediates=3, seed=1), use_pretrained=False, init=None)
    report = run_demo(out, **kwargs)
    for name in ("samples.png", "denoising_steps.png", "training_curve.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 50, name
    with Image.open(out / "denoising.gif") as gif:
        assert gif.n_frames == 3
    saved = json.loads((out / "report.json").read_text())
    assert saved["train"]["step"] == 3 and saved["data"]["images"] == 6
    assert saved["data"]["encoder"] == "minilm:all-MiniLM-L6-v2"
    assert np.isfinite(saved["train"]["val_loss"]) and saved["samples"]["steps"] == 4
    assert report["pretrained"] is None
    assert report["train"]["init"] is None and report["heldout_loss"]["before"] is None  # from scratch
    # a second run downloads and embeds nothing and continues the same run
    again = run_demo(out, **kwargs)
    assert again["data"]["downloaded"] == 0 and again["data"]["embedded"] == 0
    assert again["train"]["resumed"] is True
    assert again["heldout_loss"]["before"] == pytest.approx(saved["train"]["val_loss"], rel=1e-5)
    # a new demo run fine-tuned from that run: it starts from its EMA model, whose held-out loss is known
    tuned = run_demo(tmp_path / "tuned", **{**kwargs, "init": tmp_path / out / "run"})
    assert tuned["train"]["init"] == str(tmp_path / out / "run") and tuned["train"]["resumed"] is False
    assert tuned["heldout_loss"]["before"] == pytest.approx(saved["train"]["val_loss"], rel=1e-5)
    assert tuned["train"]["step"] == 3 and np.isfinite(tuned["heldout_loss"]["after"])
