"""train --backend jax: a tiny run on CPU whose loss falls, read back on TensorFlow; exact resume; DataParallel.

The JAX side runs in child processes with TensorFlow blocked (``helpers_jax``); this process is
on TensorFlow and checks that the run folder works there unchanged.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from helpers_jax import python_env, run_cli, run_python
from helpers_training import tiny_config, write_tiny_dataset
from pokemon_diffusion.training.metrics import read_metrics

STEPS = 40


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data"), n=12, size=20, dim=8, pokemon=4)


@pytest.fixture(scope="module")
def jax_run(data_dir, tmp_path_factory):
    """A 40-step CLI run on JAX: the run folder.

    TensorFlow is installed here and not blocked by the test: the CLI itself keeps it out of the
    JAX process (Keras would import it when saving), so none of its start-up lines may appear.
    """
    run = tmp_path_factory.mktemp("jax") / "run"
    config = tiny_config(steps=STEPS, batch_size=8, learning_rate=3e-3, log_every=10, eval_every=20,
                         checkpoint_every=10, max_checkpoints=2)
    done = run_cli(["train", "--backend", "jax", "--data", str(data_dir), "--out", str(run),
                    "--config", config.to_json()], block=())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "oneDNN" not in done.stderr and "cuda" not in done.stderr.lower(), done.stderr[-3000:]
    assert f"step {STEPS}/{STEPS} (completed)" in done.stdout
    return run


def test_import_pokemon_diffusion_and_the_cli_parser_load_no_backend():
    code = ("import sys, pokemon_diffusion\nfrom pokemon_diffusion.cli import build_parser\nbuild_parser()\n"
            "print([m for m in ('tensorflow', 'jax', 'torch', 'keras') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], env=python_env("tensorflow", ()), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]


@pytest.mark.slow
def test_the_tensorflow_path_does_not_need_jax():
    loaded = run_python("""
        import json, sys
        from pokemon_diffusion.training.loop import train
        from pokemon_diffusion.commands.train import run
        print(json.dumps(sorted(m for m in sys.modules if m.startswith(("jax", "pokemon_diffusion.training.jax")))))
    """, backend="tensorflow", block=("jax", "jaxlib"))
    assert loaded == []


@pytest.mark.slow
def test_a_jax_run_writes_the_run_folder_and_its_loss_falls(jax_run):
    records = read_metrics(jax_run / "metrics.jsonl")
    assert [r["step"] for r in records] == [10, 20, 30, 40]
    assert records[-1]["loss"] < 0.8 * records[0]["loss"]
    assert all(r["img_per_s"] > 0 for r in records) and records[-1]["val_loss"] is not None
    assert json.loads((jax_run / "encoder.json").read_text()) == {"name": "test-encoder", "dim": 8}
    assert sorted(p.name for p in (jax_run / "checkpoints").iterdir()) == ["jax-ckpt-30.npz", "jax-ckpt-40.npz"]


@pytest.mark.slow
def test_the_jax_model_loads_samples_and_scores_the_same_on_tensorflow(jax_run, data_dir):
    from pokemon_diffusion.data.dataset import load_examples, split_by_pokemon
    from pokemon_diffusion.diffusion.samplers import sample
    from pokemon_diffusion.run_dir import load_run
    from pokemon_diffusion.training.objective import held_out_loss
    from pokemon_diffusion.training.trainer import held_out_error_fn

    run = load_run(jax_run)
    tc = run.config.train
    result = sample(run.model, np.zeros((2, 8), np.float32), (2, 16, 16, 3), schedule=run.schedule, sampler="ddim",
                    steps=3, guidance_scale=2.0, seed=0, progress=False)
    assert np.isfinite(np.asarray(result.images)).all()
    # the held-out loss the JAX run logged, recomputed by the TensorFlow trainer from ema_model.keras
    examples = load_examples(data_dir, (16, 16))
    _, val = split_by_pokemon(examples.entries, tc.val_fraction, tc.seed)
    on_tf, _ = held_out_loss(held_out_error_fn(run.model, run.config), examples.images[val], examples.embeddings[val],
                             timesteps=run.config.diffusion.timesteps, points=tc.eval_timesteps, seed=tc.seed,
                             batch_size=tc.batch_size)
    on_jax = read_metrics(jax_run / "metrics.jsonl")[-1]["val_loss"]
    assert abs(on_tf - on_jax) < 1e-4


@pytest.mark.slow
def test_the_cli_refuses_to_restart_a_jax_run_without_resume(jax_run, data_dir):
    done = run_cli(["train", "--backend", "jax", "--data", str(data_dir), "--out", str(jax_run), "--steps", "2"])
    assert done.returncode == 2 and "already holds a run" in done.stderr and "--resume" in done.stderr


@pytest.fixture(scope="module")
def jax_checks():
    """One child on two virtual CPU devices: 3 steps on one device and on two (DataParallel).
    (Exact resume on both backends: test_run_loop.py.)"""
    parallel = tiny_config(batch_size=8, dropout=0.0)
    out = run_python(f"""
        import json
        import jax, keras
        import numpy as np
        from pokemon_diffusion.config import RunConfig
        from pokemon_diffusion.training.jax_trainer import JaxTrainer

        config = RunConfig.from_json({parallel.to_json()!r})
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, (3, 8, 16, 16, 3)).astype(np.uint8)
        text = rng.standard_normal((3, 8, 8)).astype(np.float32)
        flips = rng.random((3, 8)) < 0.5
        runs = {{}}
        for n in (1, 2):
            keras.utils.set_random_seed(0)
            trainer = JaxTrainer(config, 10, devices=jax.devices()[:n])
            losses = [float(trainer.train_step((pixels[s], flips[s], text[s], np.arange(8) + 8 * s)))
                      for s in range(3)]
            runs[n] = (losses, [np.asarray(w) for w in trainer.state["trainable"]],
                       str(trainer.state["trainable"][0].sharding))
        diff = max(float(np.max(np.abs(x - y))) for x, y in zip(runs[1][1], runs[2][1]))
        print(json.dumps({{"devices": jax.device_count(), "l1": runs[1][0], "l2": runs[2][0],
                           "weight_diff": diff, "sharding": runs[2][2]}}))
    """, devices=2)
    return out


@pytest.mark.slow
def test_data_parallel_over_two_devices_gives_the_loss_of_one(jax_checks):
    assert jax_checks["devices"] == 2 and "NamedSharding" in jax_checks["sharding"]
    np.testing.assert_allclose(jax_checks["l2"], jax_checks["l1"], rtol=1e-5, atol=1e-6)
    assert jax_checks["weight_diff"] < 1e-5


def test_a_jax_run_takes_the_run_folders_lock_and_a_failed_start_leaves_no_folder(data_dir, tmp_path):
    from pokemon_diffusion.locks import folder_lock

    busy = tmp_path / "busy"
    with folder_lock(busy, "train"):  # as a TensorFlow (or JAX) trainer writing into it
        done = run_cli(["train", "--backend", "jax", "--data", str(data_dir), "--out", str(busy), "--steps", "1"])
    assert done.returncode == 2 and "is being written by pid" in done.stderr, done.stderr[-2000:]
    fresh = tmp_path / "fresh"
    done = run_cli(["train", "--backend", "jax", "--data", str(tmp_path / "no-data"), "--out", str(fresh)])
    assert done.returncode == 2 and not fresh.exists(), done.stderr[-2000:]
