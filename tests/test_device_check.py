"""bench/device_check.py (the accelerator check) run on the CPU, and the synthetic-weights store it builds.

The default run smoke-tests the harness on a small stage set (MiDaS timing at 64^2 and 128^2 with the session's
store: JSON, compile counting, table, exit status) and a failing stage; the whole ``--quick`` check (networks
and a pipeline golden at parity, MiDaS, merge net, a small Final in every precision) takes minutes on 2 CPU
cores and is marked heavy.
"""

import json

import pytest

from conftest import load_bench
from hrjax.convert.synthetic import synthetic_store
from hrjax.weights import store


@pytest.fixture(scope="module")
def device_check():
    return load_bench("device_check")


def test_synthetic_store_without_torch_equals_the_converted_checkpoint(golden, weights_dir, tmp_path):
    """The in-memory path (no torch, as on a bare accelerator machine) stores the same arrays as the converter
    reading the session's synthetic checkpoint file: same digest of the stored arrays."""
    wd = synthetic_store(golden, tmp_path / "w", models=("mergenet",), via_torch=False)
    got, want = store.read_info(wd, "mergenet"), store.read_info(weights_dir, "mergenet")
    assert got.arrays_sha256 == want.arrays_sha256 and got.n_values == want.n_values
    assert got.source_check == "allow-unknown"


def test_device_check_smoke(device_check, golden, weights_dir, tmp_path, capsys):
    out = tmp_path / "dc.json"
    rc = device_check.main(["--quick", "--golden", str(golden), "--weights-dir", str(weights_dir), "--stages",
                            "midas", "--grouped-impl", "native", "--repeats", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0 and report["ok"], report
    midas = report["stages"]["midas"]
    assert set(midas) >= {"64", "128", "wall_s", "compilations", "compile_s", "peak_device_bytes"}
    assert midas["64"]["warm_s"] > 0 and midas["128"]["first_s"] >= midas["128"]["warm_s"] * 0.5
    # two new input shapes: at least one compilation each, unless the session's cache already held them
    assert report["compilations"] >= 0 and report["platform"] == "cpu"
    assert report["stages"]["weights"]["converted"] is False
    text = capsys.readouterr().out
    assert "midas" in text and "OK" in text and "64: " in text


def test_device_check_reports_a_failing_stage(device_check, weights_dir, tmp_path, capsys):
    """A stage that raises is recorded with its error and makes the exit status 1; the others still run."""
    out = tmp_path / "dc.json"
    rc = device_check.main(["--quick", "--golden", str(tmp_path / "no-golden"), "--weights-dir", str(weights_dir),
                            "--stages", "networks", "--out", str(out)])
    report = json.loads(out.read_text())
    assert rc == 1 and not report["ok"]
    assert report["stages"]["networks"]["status"] == "error"
    assert "FileNotFoundError" in report["stages"]["networks"]["error"]
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.heavy
def test_device_check_quick_runs_every_stage(device_check, golden, tmp_path):
    """The whole --quick check on the CPU, weights converted by the check itself: every stage ok, parity held.
    (~5-10 min on 2 shared cores: compiles MiDaS at ~8 shapes and the merge net in three precisions.)"""
    out = tmp_path / "dc.json"
    rc = device_check.main(["--quick", "--golden", str(golden), "--grouped-impl", "native", "--repeats", "1",
                            "--budget-s", "3600", "--out", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0 and report["ok"], json.dumps(report["stages"], indent=1)[:4000]
    s = report["stages"]
    assert s["networks"]["midas_256x320_ok"] and s["networks"]["merge_ok"]
    assert s["golden"]["failures"] == [] and s["golden"]["keys"] > 10
    assert {"final_float32", "final_tf32", "final_bfloat16"} <= set(s)
    assert s["final_float32"]["patches"] == 3 and s["final_bfloat16"]["depth_range_err_vs_float32"] < 0.1
    assert report["compilations"] > 0
