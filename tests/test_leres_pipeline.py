"""The whole pipeline with LeReS as the base network against the reference's own runs (``run.py --depthNet 2``,
tests/fixtures/leres/README.md): bookkeeping exact, maps within the MiDaS goldens' tolerances (compare.py) on
the stored grid and in their full-map statistics, the written PNG within 2 LSB, the network calls observed at
the jitted functions.

Default run: synthetic_480 R0 through ``boost`` (every intermediate) and through the CLI (``hrjax boost --model
leres_res101``). The other cases (R20 at 896 / 1568, the Finals) are ``heavy``: a LeReS pass costs several times a
MiDaS pass on CPU. Native grouped convolution (the default on the tests' CPU), as the MiDaS pipeline tests.
"""

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import cli
from hrjax.io import quantize_16bit, read_image
from hrjax.pipeline.boost import boost
from hrjax.pipeline.config import BoostConfig
from hrjax.pipeline.networks import load_models
from test_pipeline_golden import RUN_METADATA, candidate, observed_calls  # noqa: F401  (a fixture)

FIXTURES = Path(__file__).parent / "fixtures" / "leres"
PNG_LSB = 2          # the brief's acceptance: the written 16-bit PNG within 2 LSB
CASES = [pytest.param("synthetic_480_R0", id="synthetic_480_R0")] + [
    pytest.param(name, id=name, marks=pytest.mark.heavy)
    for name in ("synthetic_480_R20", "lunch_640_R0", "lunch_640_R20", "synthetic_480_Final_mr1200",
                 "lunch_640_Final_mr2000")]


@pytest.fixture(scope="module")
def leres_models(leres_weights_dir, weights_dir):
    """LeReS (synthetic, through the converter) and the merge net from the MiDaS store, the default grouped
    conv ("auto": hrjax's CPU kernel on the tests' backend, as the CLI test below)."""
    return load_models(leres_weights_dir, base="leres_res101", merge_weights_dir=weights_dir)


def packed(name: str):
    return np.load(FIXTURES / f"{name}.npz")


def config_of(gold) -> BoostConfig:
    options = json.loads(str(gold["options_json"]))
    assert options["depthNet"] == 2
    return BoostConfig(mode=str(gold["mode"]).lower(), max_batch=1,
                       max_res=options["max_res"] if options["max_res"] is not None else float("inf"),
                       output_resolution="input" if options["output_resolution"] == 1 else "native")


def compare_packed(compare, gold, cand: dict, name: str) -> list[str]:
    """Each key of the packed golden (tools/make_leres_goldens.py pack_arrays): maps on the stored grid and
    their full-map [mean, std, min, max], both relative to the full map's range; the rest as compare.py says.
    Returns the failures (and prints every line)."""
    step = int(gold["pack_step"])
    failures, lines = [], []
    for key in gold.files:
        if key in RUN_METADATA or key == "pack_step" or "__" in key:
            continue
        assert key in cand, f"candidate lacks {key}"
        g, c = gold[key], np.asarray(cand[key])
        metric, tol = compare.rule_for(key)
        if f"{key}__stats" in gold.files:
            assert c.shape == tuple(gold[f"{key}__shape"]), (key, c.shape)
            gs = gold[f"{key}__stats"]
            c64 = c.astype(np.float64)
            cs = np.array([c64.mean(), c64.std(), c64.min(), c64.max()])
            if key == "written_png":
                metric, tol = "lsb", PNG_LSB
                v = max(compare.measure("lsb", g, c[::step, ::step]), float(np.abs(cs - gs).max()))
            else:
                rng = gs[3] - gs[2] if gs[3] > gs[2] else 1.0
                v = max(float(np.abs(g.astype(np.float64) - c64[::step, ::step]).max()), float(np.abs(cs - gs).max()))
                v /= rng
        else:
            if metric == "exact" and g.dtype.kind in "iu":
                c = c.astype(g.dtype)
            v = compare.measure(metric, g, c)
        lines.append(f"{name} {key:28s} {metric:6s} {v if v is not None else float('nan'):.3e} <= {tol:.1e}")
        if v is None or not v <= tol:
            failures.append(lines[-1])
    print("\n" + "\n".join(lines))
    return failures


@pytest.mark.parametrize("name", CASES)
def test_leres_pipeline_matches_reference(golden, golden_compare, leres_models, name, observed_calls, capsys):
    gold = packed(name)
    img = read_image(golden / str(gold["image_path"]))
    assert img.shape == tuple(gold["input_shape"])
    result = boost(leres_models, img, config_of(gold), keep_intermediates=True)
    assert result.config.receptive_field == 448  # the base's (BoostConfig leaves it unset)
    with capsys.disabled():
        failures = compare_packed(golden_compare, gold, candidate(result), name)
        print(f"{name}: {result.timings}")
    assert not failures, "\n".join(failures)
    # LeReS's inputs are square (run.py l. 515), never MiDaS's aspect-kept ones
    for net, key in (("midas", "midas_call_shapes"), ("merge", "merge_call_shapes")):
        assert Counter(observed_calls[net]) == Counter(map(tuple, gold[key].tolist())), net


def test_leres_through_the_cli(golden, golden_compare, leres_weights_dir, weights_dir, tmp_path):
    """``hrjax boost --model leres_res101 --mode r0 --save npy,png16``: the written float map and PNG match the
    reference's written_float / written_png, with the CLI's default grouped convolution ("auto": kernel on the
    tests' CPU backend, conftest.auto_models)."""
    name = "synthetic_480_R0"
    gold = packed(name)
    out = tmp_path / "out"
    r = CliRunner().invoke(cli.app, ["boost", str(golden / str(gold["image_path"])), "--output", str(out),
                                     "--model", "leres_res101", "--mode", "r0", "--save", "npy,png16",
                                     "--weights-dir", str(leres_weights_dir), "--merge-weights", str(weights_dir),
                                     "--max-batch", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    depth = np.load(out / "synthetic_480.npy")
    png = cv2.imread(str(out / "synthetic_480.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(png, quantize_16bit(depth))
    cand = {"written_float": depth, "written_png": png}
    keys = [k for k in gold.files if k.startswith("written_") or k in ("pack_step",)]
    sub = {k: gold[k] for k in keys} | {k: gold[k] for k in gold.files if k.startswith("written_") and "__" in k}
    failures = compare_packed(golden_compare, _Packed(sub), cand, name + " (cli)")
    assert not failures, "\n".join(failures)


class _Packed(dict):
    """A dict with the ``files`` attribute of an NpzFile (a subset of a packed golden)."""

    @property
    def files(self):
        return list(self)
