"""Pool the conditioning figures of several ``evaluate`` reports that differ only in their seed.

One report's held-out type agreement rests on ~48 samples (±0.06); four seeds of the same run,
data and sampler give ~192 and a standard error half as large. :func:`pool_conditioning` adds the
reports' hits per guidance weight and split (``train``, ``heldout``) and returns, for each, the
pooled fractions, their binomial standard error, the mean chance level and the ratio to it.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence

MEASURES = ("top1", "top_k", "type_exact", "type_overlap")
SPLITS = ("train", "heldout")
#: report fields that must agree for the pooled figure to mean one thing (the seed may differ).
MUST_MATCH = ("run", "data", "num_samples")


def _sampling_without_guidance(report: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in report.get("sampling", {}).items() if k != "guidance_scale"}


def _check_same_setting(reports: Sequence[Dict[str, Any]]) -> None:
    first, base = reports[0], _sampling_without_guidance(reports[0])
    for index, report in enumerate(reports[1:], start=1):
        for key in MUST_MATCH:
            if report.get(key) != first.get(key):
                raise ValueError(f"report {index} has {key}={report.get(key)!r} but report 0 has "
                                 f"{first.get(key)!r}; allowed: reports of one run, dataset and "
                                 "--num that differ only in --seed")
        sampling = _sampling_without_guidance(report)
        if sampling != base:
            raise ValueError(f"report {index} samples with {sampling} but report 0 with {base}; "
                             "allowed: the same sampler, steps, eta and encoder")


def _points(report: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The report's guidance points (``guidance_scale``, ``conditioning``): its sweep, or the headline."""
    return report.get("guidance_sweep") or [{"guidance_scale": report["sampling"]["guidance_scale"],
                                             "conditioning": report["conditioning"]}]


def pool_conditioning(reports: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Pool the train / held-out conditioning figures of ``reports`` per guidance weight.

    Returns:
        ``{"reports": n, "seeds": [...], "guidance": {w: {split: {"num_samples": N,
        measure: {"value", "stderr", "chance", "ratio"}}}}}``, with ``w`` as a string ("3.0").

    Raises:
        ValueError: no reports, reports of different settings, or a report without split figures.
    """
    if not reports:
        raise ValueError("no reports to pool; allowed: one or more evaluate JSON reports")
    _check_same_setting(reports)
    # the chance level is the same at every guidance weight of a report: take it from the headline
    tallies: Dict[str, Dict[str, Dict[str, float]]] = {}
    for index, report in enumerate(reports):
        chances = report["conditioning"]
        for point in _points(report):
            weight = str(float(point["guidance_scale"]))
            for split in SPLITS:
                figures = point["conditioning"].get(split)
                if figures is None or split not in chances:
                    raise ValueError(f"report {index} has no {split!r} conditioning figures; "
                                     "allowed: reports written by evaluate with a train/held-out split")
                count = int(figures["num_samples"])
                tally = tallies.setdefault(weight, {}).setdefault(split, {"num_samples": 0})
                tally["num_samples"] += count
                for measure in MEASURES:
                    tally[measure] = tally.get(measure, 0.0) + figures[measure] * count
                    key = f"chance_{measure}"
                    tally[key] = tally.get(key, 0.0) + chances[split]["chance"][measure] * count
    pooled: Dict[str, Any] = {}
    for weight, splits in tallies.items():
        for split, tally in splits.items():
            count = tally["num_samples"]
            entry: Dict[str, Any] = {"num_samples": count}
            for measure in MEASURES:
                if not count:  # a split with no samples (a tiny --num): nothing to pool
                    entry[measure] = dict.fromkeys(("value", "stderr", "chance", "ratio"), math.nan)
                    continue
                value, chance = tally[measure] / count, tally[f"chance_{measure}"] / count
                entry[measure] = {"value": value, "stderr": math.sqrt(value * (1.0 - value) / count),
                                  "chance": chance, "ratio": value / chance if chance else math.nan}
            pooled.setdefault(weight, {})[split] = entry
    return {"reports": len(reports), "seeds": [r.get("seed") for r in reports], "guidance": pooled}


def format_pooled(pooled: Dict[str, Any]) -> str:
    """A short table: one line per guidance weight and split."""
    lines = [f"{pooled['reports']} reports (seeds {pooled['seeds']})"]
    for weight in sorted(pooled["guidance"], key=float):
        for split in SPLITS:
            entry = pooled["guidance"][weight].get(split)
            if entry is None:
                continue
            overlap = entry["type_overlap"]
            lines.append(
                f"w = {float(weight):g}  {split:8s} n = {entry['num_samples']:4d}  "
                f"top-1 {entry['top1']['value']:.3f}  top-5 {entry['top_k']['value']:.3f}  "
                f"type overlap {overlap['value']:.3f} ± {overlap['stderr']:.3f} "
                f"(chance {overlap['chance']:.3f}, {overlap['ratio']:.2f}×)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pokemon_diffusion.evaluation.pooling REPORT.json ... [--out POOLED.json]``."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m pokemon_diffusion.evaluation.pooling",
        description="Pool the train / held-out conditioning figures of evaluate reports that "
                    "differ only in --seed (e.g. four seeds of --num 96).")
    parser.add_argument("reports", nargs="+", metavar="REPORT.json")
    parser.add_argument("--out", metavar="POOLED.json", help="also write the pooled figures here")
    args = parser.parse_args(argv)
    try:
        reports = []
        for path in args.reports:
            with open(path, encoding="utf-8") as handle:
                reports.append(json.load(handle))
        pooled = pool_conditioning(reports)
    except (OSError, ValueError, KeyError) as error:  # json.JSONDecodeError is a ValueError
        detail = f"missing field {error}" if isinstance(error, KeyError) else str(error)
        print(f"pooling: error: {detail}", file=sys.stderr)
        return 2
    print(format_pooled(pooled))
    if args.out:
        from ..atomic import atomic_write_text  # noqa: PLC0415 (only for --out)
        from .report import jsonable  # NaN (an empty split) to null, as evaluate's own reports
        atomic_write_text(args.out, json.dumps(jsonable(pooled), indent=2, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
