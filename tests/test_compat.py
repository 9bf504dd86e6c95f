"""Run folders written before the shared run loop (issue 26) still resume, on both backends.

``fixtures/pre_issue26/<backend>/run`` is a tiny run stopped at step 2 by the code of commit
254acee (``run/config.json``: 4 steps, dropout and BatchNorm on, deterministic ops), and
``expected`` that code's checkpoint of the same run trained straight to step 4. Resuming the old
folder with this code must give that checkpoint: same variable names and shapes, same values.
"""

import shutil
from pathlib import Path

import pytest

from helpers_jax import run_python
from helpers_training import write_tiny_dataset

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pre_issue26"

_READERS = {
    "tensorflow": """
        import tensorflow as tf
        from pokemon_diffusion.training.loop import train

        def tensors(prefix):
            reader = tf.train.load_checkpoint(prefix)
            return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(prefix)
                    if not n.startswith(("save_counter", "elapsed", "_CHECKPOINTABLE"))}

        expected = tensors(str(fixture / "expected" / "ckpt-4"))
        latest = lambda run: tf.train.latest_checkpoint(str(run / "checkpoints"))
    """,
    "jax": """
        from pokemon_diffusion.training.jax_checkpoint import load_checkpoint
        from pokemon_diffusion.training.jax_loop import train

        tensors = lambda path: load_checkpoint(path)[0]
        expected = tensors(fixture / "expected" / "jax-ckpt-4.npz")
        latest = lambda run: str(run / "checkpoints" / "jax-ckpt-4.npz")
    """,
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data"), n=12, size=20, dim=8, pokemon=4)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_a_checkpoint_of_the_old_loop_resumes_to_the_old_result(backend, data_dir, tmp_path):
    import textwrap

    run = tmp_path / "run"
    shutil.copytree(FIXTURES / backend / "run", run)
    reader = textwrap.indent(textwrap.dedent(_READERS[backend]), " " * 8).strip()
    out = run_python(f"""
        import json
        from pathlib import Path
        import numpy as np
        from pokemon_diffusion.config import RunConfig
        from pokemon_diffusion.training.metrics import read_metrics

        fixture, run = Path({str(FIXTURES / backend)!r}), Path({str(run)!r})
        {reader}
        result = train({str(data_dir)!r}, run, RunConfig.load(run / "config.json"), resume=True)
        got = tensors(latest(run))
        print(json.dumps({{"step": result.step, "stopped": result.stopped, "names": sorted(got) == sorted(expected),
                           "count": len(got), "shapes": all(got[k].shape == expected[k].shape for k in expected),
                           "max_diff": max(float(np.max(np.abs(got[k].astype(np.float64) - expected[k])))
                                           for k in expected if got[k].dtype.kind == "f"),
                           "different": [k for k in expected if not np.array_equal(got[k], expected[k])],
                           "logged": [r["step"] for r in read_metrics(run / "metrics.jsonl")]}}))
    """, backend=backend, block=("tensorflow",) if backend == "jax" else ())
    assert (out["step"], out["stopped"]) == (4, "completed")
    assert out["names"] and out["shapes"] and out["count"] > 20
    assert out["logged"] == [1, 2, 3, 4]
    # bit-identical where it was made (same CPU kernels); another CPU may round differently
    assert out["different"] == [] or out["max_diff"] < 1e-5, out
