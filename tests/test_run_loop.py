"""The shared run loop (``training/run_loop.py``) on both backends: exact resume after SIGTERM, the
NaN guard, the time limit, and the run-folder checks.

Each backend runs the same scenario in one child process (Keras fixes its backend per process;
TensorFlow is blocked in the JAX child), which prints what the tests below check. Only how a batch
is poisoned and how a checkpoint is read differ between the two.
"""

import json
import re
import textwrap

import pytest

from helpers_jax import run_python
from helpers_training import tiny_config, write_tiny_dataset
from pokemon_diffusion.errors import CheckpointError, EncoderError
from pokemon_diffusion.run_dir import EncoderInfo
from pokemon_diffusion.training.run_loop import check_run_folder

BACKENDS = ["tensorflow", "jax"]

_PER_BACKEND = {
    "tensorflow": """
        import tensorflow as tf
        from pokemon_diffusion.training import loop as module

        def tensors(run):
            path = tf.train.latest_checkpoint(str(Path(run) / "checkpoints"))
            reader = tf.train.load_checkpoint(path)
            return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(path)
                    if not n.startswith(("save_counter", "elapsed", "_CHECKPOINTABLE"))}

        def poison():  # NaN embeddings from stream element 12 on (batch 4: step 4)
            real = module.make_dataset
            def poisoned(*args, **kwargs):
                ds = real(*args, **kwargs)
                return ds.map(lambda x, e, i: (x, tf.where(tf.reshape(i >= 12, [-1, 1]), np.nan, e), i))
            module.make_dataset = poisoned
    """,
    "jax": """
        from pokemon_diffusion.training import jax_loop as module
        from pokemon_diffusion.training.jax_checkpoint import list_checkpoints, load_checkpoint

        def tensors(run):
            found = list_checkpoints(Path(run) / "checkpoints")
            return load_checkpoint(found[max(found)])[0]

        def poison():  # NaN embeddings from stream element 12 on (batch 4: step 4)
            class Poisoned(module.BatchStream):
                def next(self):
                    pixels, flips, text, index = super().next()
                    return pixels, flips, np.where((index >= 12)[:, None], np.nan, text).astype(np.float32), index
            module.BatchStream = Poisoned
    """,
}

_SCENARIO = """
    import json, os, signal
    from pathlib import Path
    import numpy as np
    from pokemon_diffusion.config import RunConfig
    from pokemon_diffusion.training.metrics import read_metrics
    from pokemon_diffusion.training.run_loop import TrainingDivergedError
    {per_backend}
    data, tmp, out = {data!r}, Path({tmp!r}), {{}}
    # 1. exact resume: 6 steps straight, and 3 (stopped by SIGTERM) + 3 resumed
    config = RunConfig.from_json({resume_config!r})
    straight = module.train(data, tmp / "straight", config)

    def terminate_at_3(step, loss):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # handled: stop after this step and save

    first = module.train(data, tmp / "resumed", config, on_step=terminate_at_3)
    handler_restored = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    second = module.train(data, tmp / "resumed", config, resume=True)
    a, b = tensors(tmp / "straight"), tensors(tmp / "resumed")
    out["resume"] = {{"runs": [[r.stopped, r.step, Path(r.checkpoint).name] for r in (straight, first, second)],
                      "ema_file": (tmp / "resumed" / "ema_model.keras").is_file(), "handler_restored": handler_restored,
                      "names": sorted(a) == sorted(b), "count": len(a),
                      "different": [k for k in a if not np.array_equal(a[k], b[k])],
                      "logged": [r["step"] for r in read_metrics(tmp / "resumed" / "metrics.jsonl")]}}
    # 2. the NaN guard: stops at the first log after the bad step, keeps the last good checkpoint
    poison()
    try:
        module.train(data, tmp / "diverged", RunConfig.from_json({nan_config!r}))
        out["diverged"] = None
    except TrainingDivergedError as exc:
        out["diverged"] = {{"message": str(exc), "checkpoints": sorted(p.name for p in (tmp / "diverged" / "checkpoints").iterdir()),
                           "logged": [r["step"] for r in read_metrics(tmp / "diverged" / "metrics.jsonl")]}}
    # 3. the time limit: stops after the first step, with the held-out loss on its last record
    limited = module.train(data, tmp / "limited", RunConfig.from_json({limit_config!r}))
    records = read_metrics(tmp / "limited" / "metrics.jsonl")
    out["limited"] = {{"stopped": limited.stopped, "step": limited.step, "logged": [r["step"] for r in records],
                       "val_loss": records[-1].get("val_loss"), "ema_file": limited.model_path.is_file()}}
    print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data"), n=12, size=20, dim=8, pokemon=4)


@pytest.fixture(scope="module", params=BACKENDS)
def scenario(request, data_dir, tmp_path_factory):
    backend = request.param
    tmp = tmp_path_factory.mktemp(backend)
    # dropout and BatchNorm on: seed states and moving statistics must survive the resume too
    code = _SCENARIO.format(per_backend=textwrap.indent(textwrap.dedent(_PER_BACKEND[backend]), " " * 4).strip(),
                            data=str(data_dir), tmp=str(tmp),
                            resume_config=tiny_config(steps=6, dropout=0.1, checkpoint_every=4, deterministic=True).to_json(),
                            nan_config=tiny_config(steps=6, checkpoint_every=2, log_every=1).to_json(),
                            limit_config=tiny_config(steps=500, time_limit_minutes=1e-6, sample_every=0).to_json())
    result = run_python(code, backend=backend, block=("tensorflow",) if backend == "jax" else ("jax", "jaxlib"))
    result["backend"] = backend
    return result


@pytest.mark.slow
def test_resume_after_sigterm_equals_training_straight_through(scenario):
    resume = scenario["resume"]
    prefix = "jax-ckpt-" if scenario["backend"] == "jax" else "ckpt-"
    suffix = ".npz" if scenario["backend"] == "jax" else ""
    assert resume["runs"] == [["completed", 6, f"{prefix}6{suffix}"], ["interrupted", 3, f"{prefix}3{suffix}"],
                              ["completed", 6, f"{prefix}6{suffix}"]]
    assert resume["ema_file"] and resume["handler_restored"]
    assert resume["names"] and resume["count"] > 20
    # tolerance: none. A 3 + 3 run is bit-identical to the 6-step one (weights, BatchNorm statistics,
    # seed states, optimizer, EMA, random generator)
    assert resume["different"] == []
    assert resume["logged"] == [1, 2, 3, 4, 5, 6]  # no step logged twice


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(scenario):
    diverged = scenario["diverged"]
    assert diverged is not None, "a NaN batch did not stop the run"
    kept = "jax-ckpt-2.npz" if scenario["backend"] == "jax" else "ckpt-2"
    assert "NaN/inf at step 4; stopped at step 4 without saving; the last good checkpoint is" in diverged["message"]
    assert re.search(r"the last good checkpoint is (\S+)\. Lower --lr", diverged["message"]).group(1).endswith(kept)
    assert not any("-4" in name for name in diverged["checkpoints"])
    assert diverged["logged"] == [1, 2, 3]


@pytest.mark.slow
def test_the_time_limit_stops_after_the_step_and_evaluates(scenario):
    limited = scenario["limited"]
    assert (limited["stopped"], limited["step"], limited["logged"]) == ("time_limit", 1, [1])
    assert limited["val_loss"] is not None and limited["ema_file"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_existing_run_needs_resume_the_same_model_and_the_same_backend(backend, tmp_path):
    run, encoder = tmp_path / "run", EncoderInfo("test-encoder", 8)
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="already holds a run .*step 5.*--resume"):
        check_run_folder(run, tiny_config(), encoder, backend=backend, resume=False, found=5)
    tiny_config(image_size=32).save(run / "config.json")
    with pytest.raises(CheckpointError, match=r"model.image_size: 32 in the run, 16 now"):
        check_run_folder(run, tiny_config(), encoder, backend=backend, resume=True, found=5)
    (run / "encoder.json").write_text(json.dumps({"name": "other-encoder", "dim": 8}))
    with pytest.raises(EncoderError, match="'test-encoder' but the model was trained with 'other-encoder'"):
        check_run_folder(run, tiny_config(), encoder, backend=backend, resume=True, found=5)
    other = "jax-ckpt-40.npz" if backend == "tensorflow" else "ckpt-40.index"
    (run / "checkpoints" / other).write_bytes(b"state")
    for resume in (False, True):
        with pytest.raises(CheckpointError, match="checkpoints; continue that run with --backend "
                                                  + ("jax" if backend == "tensorflow" else "tensorflow")):
            check_run_folder(run, tiny_config(), encoder, backend=backend, resume=resume, found=None)


def test_both_trainers_implement_the_protocol():
    import ast
    from pathlib import Path

    import pokemon_diffusion.training as training
    from pokemon_diffusion.training.run_loop import StepTrainer

    wanted = {name for name, value in vars(StepTrainer).items() if callable(value) and not name.startswith("_")}
    assert wanted == {"train_step", "drain", "current_lr", "held_out_loss", "save", "restore", "export_ema"}
    folder = Path(training.__file__).parent
    for module, cls in (("trainer.py", "Trainer"), ("jax_trainer.py", "JaxTrainer")):  # read, not imported: no jax here
        tree = ast.parse((folder / module).read_text(encoding="utf-8"))
        node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
        methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
        # the TensorFlow train_step is the tf.function that distribute() compiles, an attribute
        assert wanted - {"train_step"} <= methods, (cls, wanted - methods)
        assert "train_step" in methods or "self.train_step = tf.function" in (folder / module).read_text(), cls
