"""Run every benchmark (what `make bench` does); each writes benchmarks/results/<name>.json.

Sampling and text figures are printed by their scripts and saved here. Expect ~15 minutes on a
2-core CPU; nothing else should run meanwhile, or the figures mean little.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

RUNS = [
    ("train", ["bench_train.py"]),
    ("step_breakdown", ["bench_step_breakdown.py"]),
    ("sampling_32", ["bench_sampling.py", "--size", "32", "--batch", "1", "--ddpm-timesteps", "200"]),
    ("sampling_32_batch16", ["bench_sampling.py", "--size", "32", "--batch", "16", "--ddpm-timesteps", "100",
                             "--skip-predict-loop"]),
    ("sampling_64", ["bench_sampling.py", "--size", "64", "--batch", "1", "--ddpm-timesteps", "100"]),
    ("text", ["bench_text.py", "--repeat", "2"]),
    ("data", ["bench_data.py"]),
]


def _last_json(text: str):
    start = text.find("{")
    return json.loads(text[start:]) if start >= 0 else {"output": text}


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    failed = []
    for name, argv in RUNS:
        print(f"== {name}: {' '.join(argv)}", flush=True)
        proc = subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:]], capture_output=True, text=True)
        if proc.returncode:
            failed.append(name)
            print(proc.stderr[-2000:])
            continue
        if name not in ("train", "data"):  # those two write their own file
            (RESULTS / f"{name}.json").write_text(json.dumps(_last_json(proc.stdout), indent=2) + "\n")
        print(proc.stdout[-3000:])
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
