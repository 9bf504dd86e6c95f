"""``mixed_precision: "auto"``: the CPU's bfloat16 support read once, the choice, the config and the flag."""

import argparse
import json
import logging
from pathlib import Path

import pytest

from pokemon_diffusion import hardware
from pokemon_diffusion.cli import main
from pokemon_diffusion.config import RunConfig, TrainConfig
from pokemon_diffusion.errors import ConfigError

AMX = frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
AVX512_BF16 = frozenset({"avx512f", "avx512_bf16"})
PLAIN = frozenset({"avx2", "fma"})


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n\nprocessor\t: 1\n")
    flags = hardware.cpu_flags(str(cpuinfo))
    assert {"avx512_bf16", "amx_tile"} <= flags and hardware.native_bfloat16(flags) == "amx"
    assert hardware.cpu_flags(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize("flags, native", [(AMX, "amx"), (AVX512_BF16, "avx512_bf16"), (PLAIN, "none"),
                                           (frozenset({"amx_tile"}), "none")])
def test_native_bfloat16(flags, native):
    assert hardware.native_bfloat16(flags) == native


@pytest.mark.parametrize("setting, gpu, flags, use", [
    (True, False, PLAIN, True), (False, True, AMX, False),  # explicit settings are taken as they are
    ("auto", True, AMX, False),  # a GPU: not measured faster (launch-bound at this size)
    ("auto", False, AMX, True),  # AMX: bfloat16 measured ~1.1x faster
    ("auto", False, AVX512_BF16, True),  # AVX512-BF16 without AMX: measured 1.24x faster (issue 28)
    ("auto", False, PLAIN, False),  # emulated bfloat16: 6-7x slower
])
def test_auto_uses_mixed_precision_only_where_it_is_faster(setting, gpu, flags, use):
    assert hardware.use_mixed_precision(setting, gpu, flags) is use


def test_auto_is_float32_on_the_unmeasured_jax_cpu_step():
    assert not hardware.use_mixed_precision("auto", False, AMX, backend="jax")
    assert hardware.use_mixed_precision(True, False, PLAIN, backend="jax")


def test_auto_logs_its_choice_once(caplog, monkeypatch):
    monkeypatch.setattr(hardware, "_LOGGED", set())
    with caplog.at_level(logging.INFO, logger="pokemon_diffusion.hardware"):
        for _ in range(3):
            hardware.use_mixed_precision("auto", False, PLAIN)
    assert [r.getMessage() for r in caplog.records] == ["mixed_precision auto: no native bfloat16 → float32"]


def test_precision_policy_on_this_machine():
    from pokemon_diffusion.training.distribute import precision_policy

    assert precision_policy(False) == "float32"
    assert precision_policy(True) == "mixed_bfloat16"  # no GPU in the tests
    native = hardware.native_bfloat16(hardware.cpu_flags())
    assert precision_policy("auto") == ("float32" if native == "none" else "mixed_bfloat16")


def test_config_takes_true_false_and_auto_and_old_files_still_load():
    for value in (True, False, "auto"):
        assert TrainConfig.from_dict({"mixed_precision": value}).mixed_precision == value
    with pytest.raises(ConfigError, match=r'mixed_precision: got \'yes\'; allowed: true \| false \| "auto"'):
        TrainConfig(mixed_precision="yes")
    old = Path(__file__).parent / "fixtures" / "pre_issue26" / "tensorflow" / "run" / "config.json"
    assert RunConfig.load(old).train.mixed_precision is json.loads(old.read_text())["train"]["mixed_precision"]


@pytest.mark.parametrize("argv, value", [([], None), (["--mixed-precision"], True), (["--no-mixed-precision"], False),
                                         (["--mixed-precision", "auto"], "auto"), (["--mixed-precision=auto"], "auto")])
def test_the_flag_is_on_off_or_auto(argv, value):
    from pokemon_diffusion.commands import train

    parser = argparse.ArgumentParser()
    train.add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "--data", "d", "--out", "o"] + argv + ["--steps", "3"])
    assert args.mixed_precision == value and args.steps == 3
    expected = TrainConfig().mixed_precision if value is None else value
    assert train.resolve_config(args).train.mixed_precision == expected


@pytest.mark.parametrize("argv", [["--mixed-precision", "yes"], ["--no-mixed-precision=auto"]])
def test_a_bad_flag_value_exits_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--data", "d", "--out", "o"] + argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "mixed-precision: got " in err, err
