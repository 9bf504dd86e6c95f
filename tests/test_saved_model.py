"""`export RUN DIR --format saved_model`: a SavedModel served in a process without this package."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pokemon_diffusion.cli import main
from pokemon_diffusion.diffusion.samplers import sample
from pokemon_diffusion.diffusion.steps import ddim_timesteps
from pokemon_diffusion.run_dir import load_run
from pokemon_diffusion.saved_model import ddim_table
from test_sample_cli import make_run, one_line_error

CASES = [(5, 3.0, 7), (20, 1.0, 7), (3, 0.0, 123)]  # steps, guidance, seed
SERVE = """
import json, sys
import numpy as np
import tensorflow as tf
folder, emb_file, out_file = sys.argv[1:4]
fn = tf.saved_model.load(folder).signatures["serving_default"]
emb = np.load(emb_file)
arrays = {}
for steps, guidance, seed in json.loads(sys.argv[4]):
    out = fn(text_emb=tf.constant(emb), seed=tf.constant(seed, tf.int64), steps=tf.constant(steps, tf.int32),
             guidance=tf.constant(guidance, tf.float32))
    arrays[f"{steps}_{guidance}_{seed}"] = out["images"].numpy()
    arrays[f"{steps}_{guidance}_{seed}_uint8"] = out["images_uint8"].numpy()
np.savez(out_file, **arrays)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("pokemon_diffusion"))))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved_model")
    run = make_run(root)
    dest = root.parent / (root.name + "_sm")
    assert main(["export", str(run), str(dest), "--format", "saved_model"]) == 0
    return run, dest


def test_the_saved_model_serves_the_samplers_images_in_a_process_without_the_package(exported, tmp_path):
    run_dir, dest = exported
    assert {"saved_model.pb", "variables", "encoder.json", "signature.json"} <= {p.name for p in dest.iterdir()}
    run = load_run(run_dir)
    assert json.loads((dest / "encoder.json").read_text()) == {"name": run.encoder.name, "dim": run.encoder.dim}
    emb = np.random.default_rng(0).normal(size=(3, run.encoder.dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    np.save(tmp_path / "emb.npy", emb)
    # cwd outside the checkout and no PYTHONPATH: the package cannot even be found by accident
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", SERVE, str(dest), str(tmp_path / "emb.npy"),
                             str(tmp_path / "out.npz"), json.dumps(CASES)],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []  # pokemon_diffusion never imported
    served = np.load(tmp_path / "out.npz")
    for steps, guidance, seed in CASES:
        ref = sample(run.model, emb, (3, 16, 16, 3), schedule=run.schedule, steps=steps, guidance_scale=guidance,
                     seed=seed, progress=False)
        images = served[f"{steps}_{guidance}_{seed}"]
        assert images.shape == (3, 16, 16, 3) and images.dtype == np.float32
        np.testing.assert_allclose(images, ref.images, atol=1e-5)
        pixels = served[f"{steps}_{guidance}_{seed}_uint8"]
        assert pixels.dtype == np.uint8 and np.abs(pixels.astype(int) - ref.to_uint8().astype(int)).max() <= 1


def test_steps_out_of_range_is_refused_by_the_graph(exported):
    _, dest = exported
    fn = tf.saved_model.load(str(dest)).signatures["serving_default"]
    emb = tf.zeros((1, json.loads((dest / "encoder.json").read_text())["dim"]))
    for steps in (0, 21):
        with pytest.raises(tf.errors.InvalidArgumentError, match="steps: allowed 1 to 20"):
            fn(text_emb=emb, seed=tf.constant(0, tf.int64), steps=tf.constant(steps), guidance=tf.constant(3.0))


def test_the_graphs_ddim_table_is_numpys():
    for steps in range(1, 21):
        np.testing.assert_array_equal(ddim_table(20, tf.constant(steps)).numpy(), ddim_timesteps(20, steps))
    for steps in (1, 2, 3, 7, 49, 50, 51, 101, 250, 333, 499, 667, 999, 1000):
        np.testing.assert_array_equal(ddim_table(1000, tf.constant(steps)).numpy(), ddim_timesteps(1000, steps))


def test_bad_format_and_busy_folder_are_one_line_errors(exported, tmp_path, capsys):
    run_dir, dest = exported
    with pytest.raises(SystemExit) as exit_info:  # argparse's choices, reported by the CLI's one-line error
        main(["export", str(run_dir), str(tmp_path / "x"), "--format", "onnx"])
    assert exit_info.value.code == 2
    message = one_line_error(capsys)
    assert "onnx" in message and "folder" in message and "saved_model" in message
    assert main(["export", str(run_dir), str(dest), "--format", "saved_model"]) == 2
    assert "exists and is not an empty folder" in one_line_error(capsys)
