"""Pooling the conditioning figures of evaluate reports that differ only in their seed."""

import json
import math

import pytest

from pokemon_diffusion.evaluation.pooling import format_pooled, main, pool_conditioning

CHANCE = {"top1": 0.001, "top_k": 0.005, "type_exact": 0.02, "type_overlap": 0.15}


def figures(overlap, count, top1=0.0):
    return {"top1": top1, "top_k": top1, "type_exact": overlap / 2, "type_overlap": overlap,
            "num_samples": count}


def report(seed, points, run="runs/a", sampler="ddim"):
    """A report as evaluate writes it: headline conditioning with chance levels, and a sweep."""
    headline = points[0][1]
    return {
        "run": run, "data": "data/x", "num_samples": 96, "seed": seed,
        "sampling": {"sampler": sampler, "steps": 50, "guidance_scale": points[0][0], "eta": 0.0},
        "conditioning": {split: dict(headline[split], chance=CHANCE) for split in ("train", "heldout")},
        "guidance_sweep": [{"guidance_scale": w, "conditioning": cond} for w, cond in points],
    }


def test_pooled_fractions_are_hit_weighted_with_a_binomial_error():
    a = report(0, [(3.0, {"train": figures(0.5, 40, top1=0.5), "heldout": figures(0.2, 40)}),
                   (1.0, {"train": figures(0.25, 40), "heldout": figures(0.3, 40)})])
    b = report(1, [(3.0, {"train": figures(0.7, 60, top1=0.6), "heldout": figures(0.3, 60)}),
                   (1.0, {"train": figures(0.5, 60), "heldout": figures(0.1, 60)})])
    pooled = pool_conditioning([a, b])
    assert pooled["reports"] == 2 and pooled["seeds"] == [0, 1]
    held = pooled["guidance"]["3.0"]["heldout"]
    assert held["num_samples"] == 100
    overlap = held["type_overlap"]
    assert overlap["value"] == pytest.approx((0.2 * 40 + 0.3 * 60) / 100)  # 26 hits of 100
    assert overlap["stderr"] == pytest.approx(math.sqrt(0.26 * 0.74 / 100))
    assert overlap["chance"] == pytest.approx(0.15)
    assert overlap["ratio"] == pytest.approx(0.26 / 0.15)
    assert pooled["guidance"]["3.0"]["train"]["top1"]["value"] == pytest.approx(0.56)
    assert pooled["guidance"]["1.0"]["heldout"]["type_overlap"]["value"] == pytest.approx(0.18)
    text = format_pooled(pooled)
    assert "w = 3  heldout  n =  100" in text and "0.260 ± 0.044 (chance 0.150, 1.73×)" in text


def test_a_report_without_a_sweep_pools_its_headline():
    one = report(0, [(3.0, {"train": figures(0.5, 10), "heldout": figures(0.4, 10)})])
    del one["guidance_sweep"]
    one["conditioning"]["heldout"]["type_overlap"] = 0.4
    pooled = pool_conditioning([one])
    assert pooled["guidance"]["3.0"]["heldout"]["type_overlap"]["value"] == pytest.approx(0.4)


@pytest.mark.parametrize("change, needle", [
    ({"run": "runs/b"}, "run="),
    ({"num_samples": 32}, "num_samples="),
    ({"sampling": {"sampler": "ddpm", "steps": 50, "guidance_scale": 3.0, "eta": 0.0}}, "samples with"),
])
def test_reports_of_different_settings_are_refused(change, needle):
    a = report(0, [(3.0, {"train": figures(0.5, 10), "heldout": figures(0.4, 10)})])
    b = dict(report(1, [(3.0, {"train": figures(0.5, 10), "heldout": figures(0.4, 10)})]), **change)
    with pytest.raises(ValueError, match=needle) as error:
        pool_conditioning([a, b])
    assert "allowed:" in str(error.value)


def test_no_reports_or_no_split_is_refused():
    with pytest.raises(ValueError, match="no reports"):
        pool_conditioning([])
    no_split = report(0, [(3.0, {"train": figures(0.5, 10), "heldout": figures(0.4, 10)})])
    del no_split["guidance_sweep"][0]["conditioning"]["heldout"]
    with pytest.raises(ValueError, match="no 'heldout' conditioning"):
        pool_conditioning([no_split])


def test_main_prints_writes_and_exits_2_on_bad_input(tmp_path, capsys):
    paths = []
    for seed in (0, 1):
        path = tmp_path / f"r{seed}.json"
        path.write_text(json.dumps(report(seed, [(3.0, {"train": figures(0.5, 10),
                                                        "heldout": figures(0.2 + 0.2 * seed, 10)})])))
        paths.append(str(path))
    out = tmp_path / "pooled.json"
    assert main(paths + ["--out", str(out)]) == 0
    assert "type overlap 0.300" in capsys.readouterr().out
    assert json.loads(out.read_text())["guidance"]["3.0"]["heldout"]["num_samples"] == 20

    assert main([str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pooling: error:") and "missing.json" in err and "\n" not in err
    (tmp_path / "bad.json").write_text("{not json")
    assert main([str(tmp_path / "bad.json")]) == 2
