import subprocess
import sys

import pytest

from pokemon_diffusion import __version__
from pokemon_diffusion.cli import COMMANDS, main


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert f"pokemon-diffusion {command}" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    [],
    ["no-such-command"],
    ["collect", "--no-such-flag"],
])
def test_usage_errors_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err


def test_help_is_fast_and_imports_no_framework():
    code = ("import sys, time; t=time.time(); from pokemon_diffusion.cli import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('tensorflow', 'torch', 'transformers', 'keras') if m in sys.modules]\n"
            "print('HEAVY', heavy, time.time() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    line = [l for l in out.splitlines() if l.startswith("HEAVY")][0]
    assert "HEAVY []" in line, line
    seconds = float(line.split()[-1])
    assert seconds < 10.0, f"--help took {seconds:.1f} s (importing the CLI and every parser)"  # generous: a busy CI


def test_import_package_is_light():
    code = ("import sys, pokemon_diffusion\n"
            "print([m for m in ('tensorflow', 'torch', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_console_entry_point_runs_as_module():
    result = subprocess.run([sys.executable, "-m", "pokemon_diffusion", "--bogus"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")


def test_a_tensorflow_command_error_is_one_line_without_start_up_noise(tmp_path):
    # TensorFlow is imported and started (quietly) before the command sees its bad input
    result = subprocess.run([sys.executable, "-m", "pokemon_diffusion", "train", "--data", str(tmp_path / "none"),
                             "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("argv, verbose, quiet", [
    (["collect", "--out", "d", "--quiet"], 0, True),
    (["-q", "collect", "--out", "d"], 0, True),
    (["collect", "--out", "d", "-v"], 1, False),
    (["-v", "collect", "--out", "d", "-v"], 2, False),
    (["embed", "--data", "d", "-vv"], 2, False),
])
def test_global_flags_are_accepted_after_the_subcommand_too(argv, verbose, quiet, monkeypatch):
    import pokemon_diffusion.cli as cli

    seen = {}
    monkeypatch.setattr(cli, "setup_logging", lambda level: seen.setdefault("level", level))
    monkeypatch.setattr(cli, "_run", lambda args: seen.update(args=args) or 0)
    assert main(argv) == 0
    args = seen["args"]
    assert (args.verbose, args.quiet) == (verbose, quiet)
    assert seen["level"] == (-1 if quiet else verbose)
    assert not hasattr(args, "verbose_after") and not hasattr(args, "quiet_after")


@pytest.mark.parametrize("argv", [["-q", "collect", "--out", "d", "-v"], ["collect", "--out", "d", "-q", "-v"],
                                  ["-v", "collect", "--out", "d", "--quiet"]])
def test_quiet_and_verbose_together_are_one_line_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--quiet" in err, err


def test_subcommand_help_lists_the_global_flags(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    out = capsys.readouterr().out
    assert "--quiet" in out and "--verbose" in out
