"""`pokemon-diffusion export RUN DIR`: the model folder with its manifest and model card, loadable again."""

import json

import numpy as np
import pytest
from PIL import Image

from pokemon_diffusion.cli import main
from pokemon_diffusion.pretrained import load_pretrained, read_manifest
from pokemon_diffusion.run_dir import load_run
from test_sample_cli import make_run, one_line_error


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("export_run"))
    records = [{"step": 50, "loss": 0.3}, {"step": 100, "loss": 0.2, "val_loss": 0.25}, {"step": 150, "loss": 0.15}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "not json\n")
    return run


def test_export_writes_a_model_folder_that_loads_again_with_its_card(trained_run, tmp_path):
    dest = tmp_path / "share" / "tiny"
    assert main(["export", str(trained_run), str(dest), "--name", "tiny-pokemon"]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "config.json", "ema_model.keras", "encoder.json",
                                                     "manifest.json", "training_curve.png"]
    card = (dest / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlicense: other\nlibrary_name: keras\npipeline_tag: text-to-image\n")
    for expected in ("# tiny-pokemon", "16×16", "T = 20", "`test-hash-encoder` (4-d)", "Data: not recorded",
                     "Steps: 150", "training loss 0.1500, held-out loss 0.2500", "![training curves](training_curve.png)",
                     "© Nintendo / Creatures Inc. / GAME FREAK inc. / The Pokémon Company", "--run hf://OWNER/REPO"):
        assert expected in card, expected
    with Image.open(dest / "training_curve.png") as figure:
        assert figure.format == "PNG"
    manifest = read_manifest(dest)  # every checksum verified
    assert manifest["name"] == "tiny-pokemon" and set(manifest["sha256"]) == {"config.json", "encoder.json",
                                                                              "ema_model.keras"}
    original, exported = load_run(trained_run), load_pretrained(dest)
    assert exported.config == original.config and exported.encoder == original.encoder
    for a, b in zip(exported.model.get_weights(), original.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_export_refuses_a_folder_with_files_unless_forced_and_a_folder_that_is_no_run(trained_run, tmp_path, capsys):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    assert main(["export", str(trained_run), str(dest)]) == 2
    assert f"export: {dest} exists and is not an empty folder; allowed: a new or empty folder, or --force" \
        in one_line_error(capsys)
    assert main(["export", str(trained_run), str(dest), "--force"]) == 0
    assert (dest / "notes.txt").read_text() == "mine" and (dest / "README.md").is_file()
    capsys.readouterr()
    assert main(["export", str(tmp_path / "nothing"), str(tmp_path / "x")]) == 2
    assert "it has no config.json; allowed: a run folder written by `pokemon-diffusion train`" in one_line_error(capsys)
    assert main(["export", str(trained_run), str(trained_run)]) == 2
    assert "allowed: another folder" in one_line_error(capsys)


def test_export_reference_keeps_its_name_data_and_evaluation(tmp_path):
    dest = tmp_path / "ref"
    assert main(["export", "reference", str(dest)]) == 0
    shipped = read_manifest()
    card = (dest / "README.md").read_text(encoding="utf-8")
    assert f"# {shipped['name']}" in card and f"Data: {shipped['dataset']}" in card
    assert "[evaluation.json](evaluation.json)" in card and (dest / "evaluation.json").is_file()
    assert (dest / "prompt_names.json").is_file() and "prompt_names.json" in read_manifest(dest)["sha256"]
