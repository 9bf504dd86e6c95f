"""Sampling in bfloat16 where the CPU runs it natively: the loaded network, the choice, the CLI flag."""

import numpy as np
import pytest

from pokemon_diffusion import hardware
from pokemon_diffusion.config import SampleConfig
from pokemon_diffusion.run_dir import load_run
from test_sample_cli import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("precision_run"))


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, 16, 16, 3)).astype(np.float32), np.array([3, 17], np.int32),
            rng.standard_normal((2, 4)).astype(np.float32)]


def test_a_mixed_load_computes_in_bfloat16_with_the_same_weights_and_nearly_the_same_output(run_dir):
    exact = load_run(run_dir)  # the default: the saved float32 network as it is (training, evaluation)
    mixed = load_run(run_dir, mixed_precision=True)
    assert exact.model.dtype_policy.name == "float32"
    policies = [layer.dtype_policy.name for layer in mixed.model.layers if layer.weights]
    assert policies.count("mixed_bfloat16") > len(policies) / 2  # the convolutions (a few layers stay float32)
    for a, b in zip(exact.model.weights, mixed.model.weights):
        assert b.dtype == "float32"
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    out32, out16 = (np.asarray(m.model(_inputs(), training=False)) for m in (exact, mixed))
    assert out16.dtype == np.float32 and out16.shape == out32.shape
    assert 0 < np.abs(out16 - out32).max() < 0.05 * max(1.0, np.abs(out32).max())  # bfloat16 rounding only


@pytest.mark.parametrize("flags, expected", [(frozenset(), "float32"), (frozenset({"avx512_bf16"}), "mixed_bfloat16"),
                                             (frozenset({"amx_bf16", "amx_tile"}), "mixed_bfloat16")])
def test_auto_follows_the_processor(run_dir, monkeypatch, flags, expected):
    monkeypatch.setattr(hardware, "cpu_flags", lambda *a: flags)
    assert SampleConfig().mixed_precision == "auto"
    model = load_run(run_dir, mixed_precision="auto").model
    assert {layer.dtype_policy.name for layer in model.layers}.issuperset({expected})


@pytest.mark.parametrize("argv, expected", [([], "auto"), (["--no-mixed-precision"], False),
                                            (["--mixed-precision"], True)])
def test_the_sample_flag_reaches_the_loader(run_dir, monkeypatch, tmp_path, argv, expected):
    import pokemon_diffusion.run_dir as run_dir_module
    from pokemon_diffusion.cli import main

    seen = []
    real = run_dir_module.load_run

    def spy(*args, **kwargs):
        seen.append(kwargs.get("mixed_precision"))
        raise SystemExit(0)  # enough: the flag arrived

    monkeypatch.setattr(run_dir_module, "load_run", spy)
    with pytest.raises(SystemExit):
        main(["sample", "--run", str(run_dir), "--prompt", "a ghost", "--out", str(tmp_path / "o.png")] + argv)
    assert seen == [expected] and real is not spy
