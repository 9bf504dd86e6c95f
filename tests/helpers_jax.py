"""Run code on Keras' JAX backend in a child process (the pytest process is on TensorFlow).

Keras fixes its backend per process, so every JAX check runs in a subprocess with
``KERAS_BACKEND=jax``. By default TensorFlow is made unimportable there (and in the children it
starts), as on the GPU machine, which has JAX and no TensorFlow: a test then also proves the JAX
path does not need it. The block is a ``sitecustomize`` module on the children's PYTHONPATH.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Sequence

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
BLOCK_ENV = "POKEMON_DIFFUSION_TEST_BLOCK_IMPORTS"

SITECUSTOMIZE = """
import os, sys
_blocked = set(filter(None, os.environ.get({env!r}, "").split(",")))
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _blocked:
            raise ImportError(name + " is blocked in this test process")
        return None
if _blocked:
    sys.meta_path.insert(0, _Blocked())
""".format(env=BLOCK_ENV)


@functools.lru_cache(maxsize=1)
def _site_dir() -> str:
    folder = tempfile.mkdtemp(prefix="pd_jax_site_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # with its compilation cache
    Path(folder, "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder


def python_env(backend: str = "jax", block: Sequence[str] = ("tensorflow",), devices: int = 1) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, POKEMON_DIFFUSION_PROGRESS="0", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([_site_dir(), str(ROOT), str(TESTS)]), **{BLOCK_ENV: ",".join(block)})
    # one persistent compilation cache for the session: every tiny run compiles the same step,
    # and a new JaxTrainer is a new jit (measured: the 3 + 3 resume test went from 91 s to ~40 s)
    env.update(JAX_COMPILATION_CACHE_DIR=str(Path(_site_dir()) / "jax_cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def run_python(code: str, *, backend: str = "jax", block: Sequence[str] = ("tensorflow",), devices: int = 1,
               timeout: float = 600) -> Any:
    """Run ``code`` in a child Python; it must print one JSON line last. Returns that JSON, decoded."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=python_env(backend, block, devices),
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"child failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_cli(args: Sequence[str], *, block: Sequence[str] = ("tensorflow",), timeout: float = 600):
    """``python -m pokemon_diffusion ARGS`` with ``block`` unimportable in it and its children."""
    return subprocess.run([sys.executable, "-m", "pokemon_diffusion", *args], env=python_env("tensorflow", block),
                          capture_output=True, text=True, timeout=timeout)
