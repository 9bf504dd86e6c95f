"""Shipping a cascade: export_pretrained / export of a cascade folder, its manifest, load_pretrained.

Tiny untrained runs (test_cascade's helpers) exported to temporary folders: the shipped folder is never touched.
"""

import json
import shutil

import numpy as np
import pytest

from pokemon_diffusion.cli import main
from pokemon_diffusion.diffusion.samplers import sample
from pokemon_diffusion.errors import CheckpointError
from pokemon_diffusion.pretrained import MANIFEST_FILE, export_pretrained, load_pretrained, read_manifest
from pokemon_diffusion.run_dir import CascadeRun, LoadedRun, load_run
from test_cascade import DIM, tiny, write_run

EMB = np.random.default_rng(3).normal(size=(1, DIM)).astype(np.float32)
STAGE_FILES = {"up32/config.json", "up32/encoder.json", "up32/ema_model.keras"}
BASE_FILES = {"config.json", "encoder.json", "ema_model.keras"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A cascade folder of runs kept elsewhere (as a lead's training runs are): runs/cascade.json."""
    root = tmp_path_factory.mktemp("runs")
    write_run(root / "base", tiny(), 0)
    write_run(root / "up32", tiny(image_size=32, low_res=16), 1)
    (root / "base" / "prompt_names.json").write_text(json.dumps({"names": []}))
    cascade = root / "cascade"
    cascade.mkdir()
    (cascade / "cascade.json").write_text(json.dumps({"base": str(root / "base"), "stages": [str(root / "up32")],
                                                      "stage_steps": 3, "aug_level": 0.1}))
    return root


@pytest.fixture(scope="module")
def shipped(runs, tmp_path_factory):
    dest = tmp_path_factory.mktemp("ship") / "pretrained"
    manifest = export_pretrained(runs / "cascade", dest, name="tiny-cascade", steps=5, stages=[{"steps": 7}])
    return dest, manifest


def test_a_cascade_exports_as_the_base_folder_plus_stage_folders_with_one_manifest(shipped):
    dest, manifest = shipped
    assert set(manifest["sha256"]) == BASE_FILES | STAGE_FILES | {"prompt_names.json", "cascade.json"}
    assert json.loads((dest / "cascade.json").read_text()) == {"base": ".", "stages": ["up32"], "stage_steps": 3,
                                                               "aug_level": 0.1, "stage_guidance": None}
    assert manifest["stages"] == [{"steps": 7, "folder": "up32", "image_size": 32, "low_res": 16}]
    assert manifest["sizes"] == [16, 32] and manifest["name"] == "tiny-cascade" and manifest["steps"] == 5
    assert manifest["bytes"] == sum((dest / n).stat().st_size for n in manifest["sha256"])
    assert read_manifest(dest) == json.loads((dest / MANIFEST_FILE).read_text())


def test_load_pretrained_gives_the_cascade_sampling_as_the_source_runs(shipped, runs):
    dest, _ = shipped
    run = load_pretrained(dest)
    assert isinstance(run, CascadeRun) and run.sizes == [16, 32] and run.base.path == dest
    assert run.stage_steps == 3 and run.aug_level == 0.1 and run.name_table is not None
    source = load_run(runs / "cascade")
    got = sample(run, EMB, (1, 32, 32, 3), steps=2, seed=4, progress=False).images
    np.testing.assert_array_equal(got, sample(source, EMB, (1, 32, 32, 3), steps=2, seed=4, progress=False).images)


@pytest.mark.parametrize("damage, message", [
    ("flip", "pretrained file .*up32/ema_model.keras is damaged: sha256"),
    ("delete", "pretrained model is incomplete: .*up32/encoder.json is missing"),
    ("unlisted", "lists no checksum for up32/config.json"),
    ("outside", r"file '../x'; allowed: paths inside the folder"),
    ("cascade", "lists no checksum for cascade.json"),
])
def test_every_stage_file_is_verified(shipped, tmp_path, damage, message):
    copy = tmp_path / "copy"
    shutil.copytree(shipped[0], copy)
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    if damage == "flip":
        data = bytearray((copy / "up32" / "ema_model.keras").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (copy / "up32" / "ema_model.keras").write_bytes(bytes(data))
    elif damage == "delete":
        (copy / "up32" / "encoder.json").unlink()
    else:
        drop = {"unlisted": "up32/config.json", "cascade": "cascade.json"}.get(damage)
        manifest["sha256"].pop(drop, None)
        if damage == "outside":
            manifest["sha256"]["../x"] = "0" * 64
        (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(copy)


def test_a_trained_stage_joins_a_shipped_single_run_in_place(shipped, runs, tmp_path):
    """How the lead ships: the shipped single run's folder, a cascade.json naming it and the stage, exported onto it."""
    folder = tmp_path / "pretrained"
    export_pretrained(runs / "base", folder, name="single")
    before = (folder / "ema_model.keras").read_bytes()
    assert type(load_pretrained(folder)) is LoadedRun
    source = tmp_path / "cascade"
    source.mkdir()
    (source / "cascade.json").write_text(json.dumps({"base": str(folder), "stages": [str(runs / "up32")],
                                                     "stage_steps": 3, "aug_level": 0.1}))
    facts = {k: v for k, v in read_manifest(folder).items() if k not in ("sha256", "bytes")}
    export_pretrained(source, folder, **facts)
    assert (folder / "ema_model.keras").read_bytes() == before
    run = load_pretrained(folder)
    assert isinstance(run, CascadeRun) and run.sizes == [16, 32] and read_manifest(folder)["name"] == "single"


def test_the_export_command_writes_a_cascade_folder_with_its_card(runs, tmp_path):
    dest = tmp_path / "share"
    assert main(["export", str(runs / "cascade"), str(dest), "--name", "tiny"]) == 0
    card = (dest / "README.md").read_text()
    assert "A cascade: this base, then upsampler stages to 32×32" in card and "`up32/ema_model.keras`" in card
    assert load_pretrained(dest).sizes == [16, 32]


def test_a_shipped_cascade_is_what_sample_and_the_app_give_by_default(shipped, tmp_path, monkeypatch):
    """Once the shipped folder is a cascade, `sample` without --run and the app give its largest size."""
    from PIL import Image

    import pokemon_diffusion.pretrained as pretrained
    import pokemon_diffusion.text.registry as registry
    from pokemon_diffusion.commands.app import load_session
    from test_sample_cli import HashEncoder

    monkeypatch.setattr(pretrained, "pretrained_dir", lambda: shipped[0])
    monkeypatch.setattr(registry, "load_encoder_matching", lambda expected, spec=None: HashEncoder(expected.name,
                                                                                                  expected.dim))
    for flags, side in (([], 32), (["--size", "16"], 16)):
        out = tmp_path / f"out{side}"
        assert main(["sample", "--prompt", "a ghost", "--steps", "2", "--seed", "0", "--out-dir", str(out)] + flags) == 0
        png, = out.glob("*.png")
        with Image.open(png) as image:
            assert image.size == (side, side)
    session = load_session()
    try:
        assert session.sizes == [16, 32] and session.default_size == 32
    finally:
        session.close()


def test_bench_cascade_times_each_size_of_a_cascade_folder(shipped, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cascade.py"
    spec = importlib.util.spec_from_file_location("bench_cascade", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    report = bench.main(["--run", str(shipped[0]), "--steps", "2", "--repeats", "1", "--no-encoder", "--json", str(out)])
    assert [r["size"] for r in report["rows"]] == [16, 32] and [r["steps"] for r in report["rows"]] == [2, 5]
    assert json.loads(out.read_text()) == report and report["threads"]["cpu_count"] >= 1
    printed = capsys.readouterr().out
    assert "best s" in printed and "  32x32" in printed and "threads: TensorFlow intra-op" in printed
