"""The train step's branches (``TrainConfig.branches``): the batch split into independent halves that
TensorFlow runs side by side, each op on its own core (``threads.configure_threads``).

The update must be the whole batch's (GroupNorm normalises per example), a resumed branched run
must equal a straight one bit for bit, and "auto" must pick two branches only where measured.
Thread pools are fixed when TensorFlow starts, so the training checks run in a fresh interpreter.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pokemon_diffusion.config import TrainConfig
from pokemon_diffusion.errors import ConfigError
from pokemon_diffusion.hardware import AUTO, train_branches

ROOT = Path(__file__).resolve().parents[1]


def test_auto_picks_two_branches_only_for_a_groupnorm_cpu_step_on_two_or_more_cores():
    auto = dict(gpu=False, norm="group", cores=2)
    assert train_branches(AUTO, **auto) == 2
    assert train_branches(AUTO, **{**auto, "cores": 16}) == 2  # two measured; more were slower on 2 cores
    assert train_branches(AUTO, **{**auto, "cores": 1}) == 1
    assert train_branches(AUTO, **{**auto, "norm": "batch"}) == 1  # a branch would have its own batch statistics
    assert train_branches(AUTO, **{**auto, "gpu": True}) == 1
    assert train_branches(AUTO, **auto, distributed=True) == 1
    assert train_branches(3, **{**auto, "norm": "batch"}) == 3  # a number is taken as it is


@pytest.mark.parametrize("bad", [0, 65, "two", True, 2.0, None])
def test_the_config_takes_a_count_or_auto_only(bad):
    with pytest.raises(ConfigError, match="branches"):
        TrainConfig(branches=bad)
    assert TrainConfig.from_dict(TrainConfig(branches=4).to_dict()).branches == 4
    assert TrainConfig().branches == AUTO


def test_the_train_flag_sets_branches_and_refuses_other_words(tmp_path, capsys):
    from pokemon_diffusion.cli import build_parser
    from pokemon_diffusion.commands.train import resolve_config

    parse = build_parser().parse_args
    assert resolve_config(parse(["train", "--data", "d", "--out", str(tmp_path / "r"), "--branches", "3"])).train.branches == 3
    assert resolve_config(parse(["train", "--data", "d", "--out", str(tmp_path / "r2"),
                                 "--branches", "auto"])).train.branches == AUTO
    with pytest.raises(SystemExit) as exit_info:
        parse(["train", "--data", "d", "--out", "r", "--branches", "two"])
    assert exit_info.value.code == 2 and "allowed: an integer, or auto" in capsys.readouterr().err


def test_the_jax_backend_refuses_a_branch_count(tmp_path, capsys):
    """The JAX step is one XLA program: `--branches 2` there is a one-line error, not a silent no-op."""
    from pokemon_diffusion.cli import main

    code = main(["train", "--backend", "jax", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r"),
                 "--branches", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--branches: got 2 with --backend jax; allowed: auto or 1" in err[0]
    assert not (tmp_path / "r").exists()


SCRIPT = r"""
import json, logging, sys
from pathlib import Path
sys.path.insert(0, "tests")
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
import numpy as np
import tensorflow as tf
from pokemon_diffusion.hardware import available_cores
from pokemon_diffusion.threads import configure_threads
# before TensorFlow starts: one thread per op, two ops at a time on two cores
set_first = configure_threads(2)
pools = [tf.config.threading.get_intra_op_parallelism_threads(), tf.config.threading.get_inter_op_parallelism_threads()]
import keras
from helpers_training import tiny_config, write_tiny_dataset
from pokemon_diffusion.data.dataset import make_dataset
from pokemon_diffusion.training import loop
from pokemon_diffusion.training.trainer import Trainer

out = {"set_first": set_first, "pools": pools, "cores": available_cores()}
rng = np.random.default_rng(0)
images = rng.uniform(-1, 1, (10, 16, 16, 3)).astype(np.float32)
text = rng.standard_normal((10, 8)).astype(np.float32)

def run(branches, steps=3):
    keras.utils.set_random_seed(0)
    # GroupNorm, no dropout, a small clip norm (clipping must see the whole batch's gradient)
    config = tiny_config(norm="group", channel_mults=(1, 2), batch_size=5, grad_clip_norm=0.05, cond_drop=0.5,
                         branches=branches)
    trainer = Trainer(config, total_steps=10, strategy=tf.distribute.get_strategy())
    start = [v.numpy().copy() for v in trainer.model.variables]
    batches = iter(trainer.distribute(make_dataset(images, text, 5, repeat=True, with_index=True)))
    losses = [float(trainer.train_step(next(batches))) for _ in range(steps)]
    return trainer, losses, start, [v.numpy() for v in trainer.model.variables]

diff = lambda a, b: max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
one, two, three = run(1), run(2), run(3)
out["set_again"] = configure_threads(3)  # TensorFlow has started: the pools stay as they are
out["branches"] = [one[0].branches, two[0].branches, three[0].branches, run("auto", steps=0)[0].branches]
out["losses"] = [one[1], two[1], three[1]]
out["weight_diff"] = [diff(one[3], two[3]), diff(one[3], three[3])]
out["moved"] = diff(one[2], one[3])
try:  # a batch smaller than the branches: a clear error, not a failure deep in the model
    two[0].train_step((tf.constant(images[:1]), tf.constant(text[:1]), tf.constant([0], tf.int64)))
    out["small_batch"] = None
except tf.errors.InvalidArgumentError as exc:
    out["small_batch"] = exc.message

# resume: 3 steps, stop, 3 resumed == 6 straight, bit for bit (dropout on: its seed state too)
data = write_tiny_dataset(Path(sys.argv[1]) / "data", n=12, size=20, dim=8, pokemon=4)
config = tiny_config(norm="group", steps=6, dropout=0.1, checkpoint_every=4, deterministic=True, branches=2)
def tensors(run):
    path = tf.train.latest_checkpoint(str(run / "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(path)
            if not n.startswith(("save_counter", "elapsed", "_CHECKPOINTABLE"))}
tmp = Path(sys.argv[1])
loop.train(data, tmp / "straight", config)
loop.train(data, tmp / "resumed", config, on_step=lambda step, loss: step == 3)
loop.train(data, tmp / "resumed", config, resume=True)
a, b = tensors(tmp / "straight"), tensors(tmp / "resumed")
out["resume_count"] = len(a)
out["resume_different"] = [k for k in a if not np.array_equal(a[k], b[k])]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_branches_give_the_whole_batch_update_and_resume_exactly(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["set_first"] is True and result["set_again"] is False
    assert result["pools"] == [max(1, result["cores"] // 2), 2]
    # batch 5: branches of 2 + 3 and 1 + 2 + 2; "auto" is 2 on 2+ cores with GroupNorm
    assert result["branches"] == [1, 2, 3, 2 if result["cores"] >= 2 else 1]
    for losses in result["losses"][1:]:
        assert losses == pytest.approx(result["losses"][0], rel=1e-5)  # float32 sums in another order
    assert result["moved"] > 1e-4 and max(result["weight_diff"]) < 1e-5
    assert "smaller than branches (2)" in result["small_batch"]
    assert result["resume_count"] > 20 and result["resume_different"] == []
    assert "2 branch(es)" in proc.stderr  # the run's log line says how it ran
