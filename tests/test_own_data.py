"""`train --data DIR` on a plain folder with metadata.jsonl, and --validation-prompt."""

import json

import cv2
import numpy as np
import pytest

from pokemon_diffusion.cli import main
from pokemon_diffusion.collection.folder import folder_records
from pokemon_diffusion.errors import DataError
from pokemon_diffusion.text.encoders import MINILM_IDENTITY
from pokemon_diffusion.training import loop as training_loop
from helpers_training import tiny_config

TEXTS = {"red.png": "a red ball on white", "blue.png": "a blue ball on white", "sub/green.jpg": "a green ball",
         "plain.png": ""}


def _pictures(folder):
    rng = np.random.default_rng(0)
    for i, name in enumerate(TEXTS):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        image = np.full((24, 24, 3), 255, np.uint8)
        cv2.circle(image, (12, 12), 6, tuple(int(c) for c in rng.integers(0, 200, 3)), -1)
        cv2.imwrite(str(folder / name), image)
    lines = [json.dumps({"file_name": name, "text": text}) for name, text in TEXTS.items()]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_metadata_jsonl_captions_and_captions_csv_winning(tmp_path):
    folder = _pictures(tmp_path)
    records = {r.relative: r for r in folder_records(folder)}
    assert records["red.png"].caption == "a red ball on white" and records["sub/green.jpg"].caption == "a green ball"
    assert records["plain.png"].caption is None and records["plain.png"].name == "Plain"  # made from the name
    (folder / "captions.csv").write_text("file,caption\nred.png,a crimson ball\n", encoding="utf-8")
    assert {r.relative: r for r in folder_records(folder)}["red.png"].caption == "a crimson ball"


def test_bad_metadata_jsonl_lists_its_lines(tmp_path):
    _pictures(tmp_path)
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "red.png", "text": "x"}\nnot json\n{"text": "y"}\n')
    with pytest.raises(DataError, match=r"2 problem\(s\): line 2: .*line 3: .*allowed: one JSON object a line"):
        folder_records(tmp_path)


@pytest.mark.slow  # ~13 s: loads MiniLM and traces a tiny U-Net
def test_train_on_a_plain_folder_collects_embeds_and_uses_the_validation_prompts(tmp_path, monkeypatch, capsys,
                                                                                  package_log):
    folder = _pictures(tmp_path / "mine")
    run = tmp_path / "run"
    grids = []
    real_grid = training_loop._SampleGrid

    def record_grid(embeddings, seed):
        grids.append(np.asarray(embeddings))
        return real_grid(embeddings, seed)

    monkeypatch.setattr(training_loop, "_SampleGrid", record_grid)
    config = tiny_config(steps=1, batch_size=2, val_fraction=0.0, sample_every=1).to_json()
    code = main(["-q", "train", "--data", str(folder), "--out", str(run), "--config", config,
                 "--validation-prompt", "a red ball", "--validation-prompt", "a blue ball"])
    assert code == 0, capsys.readouterr().err
    metadata = json.loads((run / "data" / "pokemon_metadata.json").read_text(encoding="utf-8"))
    assert sorted(e["caption"] for e in metadata if e["caption"] in TEXTS.values()) == sorted(
        t for t in TEXTS.values() if t)
    assert json.loads((run / "data" / "embeddings.json").read_text())["name"] == MINILM_IDENTITY  # auto, offline
    assert json.loads((run / "encoder.json").read_text())["name"] == MINILM_IDENTITY
    assert (run / "ema_model.keras").is_file()
    assert grids and grids[-1].shape == (2, 384)  # the two validation prompts, not the dataset's captions
    assert "sample grid disabled" not in package_log.text  # the grid was drawn from them at step 1
    import tensorflow as tf

    tags = {v.tag for f in (run / "tensorboard").iterdir() for e in tf.compat.v1.train.summary_iterator(str(f))
            for v in e.summary.value}
    assert "samples" in tags
    from pokemon_diffusion.text.registry import load_text_encoder

    np.testing.assert_allclose(grids[-1], load_text_encoder("minilm").encode(["a red ball", "a blue ball"]),
                               atol=1e-5)


def test_validation_prompts_are_checked_before_anything_runs(tmp_path, capsys):
    prompts = [arg for i in range(9) for arg in ("--validation-prompt", f"p{i}")]
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), *prompts]) == 2
    assert "--validation-prompt: got 9 prompt(s); allowed: 1 to 8" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
