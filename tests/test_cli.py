"""``hrjax boost``: folder runs with bad inputs, resume/overwrite, output formats, JSON records, the fast
missing-weights failure, the console script, and (heavy) the Final golden through the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import cli
from conftest import SMALL_MERGE_ARCHITECTURE
from hrjax.run.exits import UsageError
from hrjax.run.inputs import Job, collect_inputs
from hrjax.run.outputs import RunOptions, output_paths, parse_save, patch_path, patches_index_path
from hrjax.run.records import RECORDS_DIR, input_identity, is_complete, write_record
from hrjax.io import quantize_16bit

GOOD = {"good_a.png": (96, 128), "good_b.jpg": (120, 160)}
BAD = {"corrupt.png": "not a readable image", "text.png": "not a readable image", "empty.jpg": "empty file"}
MODELS = ("midas_v21", "mergenet")


def _picture(h, w, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 255.0 / w, y * 255.0 / h, ((x + y) % 64) * 4.0], -1) + rng.integers(0, 30, (h, w, 3))
    return a.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("images")
    for i, (name, (h, w)) in enumerate(GOOD.items()):
        assert cv2.imwrite(str(d / name), _picture(h, w, i))
    png = cv2.imencode(".png", _picture(64, 64, 9))[1].tobytes()
    (d / "corrupt.png").write_bytes(png[: len(png) // 2])      # truncated PNG
    (d / "text.png").write_text("this is not an image\n")      # non-image with an image extension
    (d / "empty.jpg").write_bytes(b"")                          # 0-byte file
    (d / "notes.txt").write_text("not picked up")              # not an image extension: ignored
    (d / "sub").mkdir()
    assert cv2.imwrite(str(d / "sub" / "deeper.png"), _picture(96, 128, 5))  # only with --recursive
    return d


def console_script() -> list[str]:
    exe = Path(sys.executable).with_name("hrjax")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "cli"]


def invoke(args):
    return CliRunner().invoke(cli.app, [str(a) for a in args], catch_exceptions=False)


def records(stdout: str) -> dict[str, dict]:
    recs = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return {Path(r["input"]).name: r for r in recs}


# --------------------------------------------------------------------------------------------------------
# pure helpers (no jax)


def test_collect_inputs_filters_sorts_and_makes_names_unique(tmp_path):
    d = tmp_path / "in"
    for rel in ("b.webp", "a.png", "a.JPG", "c.TIFF", "d.Bmp", ".hidden.png", "notes.txt", "sub/a.png",
                "sub/x.jpeg", "whole/w.png", ".git/z.png", "out/old.png"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(b"x")
    flat = collect_inputs([d], recursive=False, output=d / "out")
    assert [(j.source.name, j.key) for j in flat] == [
        ("a.JPG", "a_jpg"), ("a.png", "a_png"), ("b.webp", "b"), ("c.TIFF", "c"), ("d.Bmp", "d")]
    deep = collect_inputs([d], recursive=True, output=d / "out")
    assert [j.key for j in deep] == ["a_jpg", "a_png", "b", "c", "d", "sub/a", "sub/x", "whole_/w"]
    # same name from two inputs, the same file twice, a missing path (a failed job, not a crash)
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.png").write_bytes(b"x")
    jobs = collect_inputs([d / "a.png", other / "a.png", d / "a.png", tmp_path / "nope.png"])
    assert [j.key for j in jobs] == ["a", "a_2", "nope"]
    assert jobs[2].error and jobs[0].error is None
    assert collect_inputs([d / "notes.txt"])[0].key == "notes"  # explicit files are always tried


def test_output_paths_and_resume_rule(tmp_path):
    opts = RunOptions(output=tmp_path, save=parse_save(["png16,npy", "color"]), save_whole=True,
                             save_patches=True)
    job = Job(Path("x/y.png"), "sub/y")
    paths = output_paths(opts, job)
    assert {k: p.relative_to(tmp_path).as_posix() for k, p in paths.items()} == {
        "png16": "sub/y.png", "npy": "sub/y.npy", "color": "sub/y_color.png", "whole": "whole/sub/y.png"}
    assert patch_path(opts, job, 7).relative_to(tmp_path).as_posix() == "patches/sub/y_0007.png"
    ident = {"mode": "r0"}
    job = Job(tmp_path / "y.png", "sub/y")
    job.source.write_bytes(b"input")
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    assert not is_complete(opts, job, ident)  # files without a record are not done
    idx = patches_index_path(opts, job)
    idx.parent.mkdir(parents=True, exist_ok=True)
    idx.write_text(json.dumps({"files": ["y_0000.png"]}))
    patch = patch_path(opts, job, 0)
    patch.write_bytes(b"x")
    outs = [*paths.values(), idx]
    input_id = input_identity(job.source)
    write_record(opts, job, ident, outs + [patch], status="writing", input_id=input_id)
    assert not is_complete(opts, job, ident)  # interrupted while writing
    write_record(opts, job, ident, outs + [patch], status="done", input_id=input_id)
    assert is_complete(opts, job, ident)
    patch.unlink()
    assert not is_complete(opts, job, ident)  # a listed patch is missing
    with pytest.raises(UsageError):
        parse_save(["png16,tiff"])


def test_usage_errors_exit_2(tmp_path, images):
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (["--mode", "r5"], ["--save", "png16,exr"], ["--max-res", "0"], ["--device", "abacus"],
                 ["--max-batch", "0"], ["--grouped-conv", "dense"]):
        r = invoke(["boost", images, "--output", tmp_path / "o", "--weights-dir", empty, *args])
        assert r.exit_code == 2, (args, r.output)
    r = invoke(["boost", images, "--output", images / "good_a.png"])
    assert r.exit_code == 2 and "not a folder" in r.output
    # a bad $HRJAX_GROUPED_CONV (the option's default) is a usage error as well, named
    r = CliRunner().invoke(cli.app, ["boost", str(images), "--output", str(tmp_path / "o"), "--weights-dir",
                                     str(empty)], env={"HRJAX_GROUPED_CONV": "dense"})
    assert r.exit_code == 2 and "--grouped-conv" in r.output


def test_missing_weights_fail_fast_without_jax(tmp_path, images):
    """As a subprocess through the console script: non-zero exit, the fix-it commands, and neither jax nor flax
    imported on that path (what makes it fast; timed in no test, a loaded machine makes any bound flaky)."""
    from hrjax.weights.load import fix_it_commands

    empty = tmp_path / "no-weights"
    empty.mkdir()
    args = ["boost", str(images), "--output", str(tmp_path / "out"), "--weights-dir", str(empty)]
    p = subprocess.run(console_script() + args, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    for m in MODELS:
        assert fix_it_commands(m, empty) in p.stderr
    assert not (tmp_path / "out").exists()
    # the same path with -X importtime: no jax/flax module was imported
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", "import cli; cli.main()", *args],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in p.stderr.splitlines()
                if line.startswith("import time:")}
    assert not imported & {"jax", "jaxlib", "flax", "orbax", "torch"}, imported & {"jax", "flax"}


def test_top_level_api_is_lazy():
    code = ("import sys, hrjax; assert 'jax' not in sys.modules; c = hrjax.BoostConfig(mode='r0'); "
            "assert 'jax' not in sys.modules; import hrjax.pipeline.boost as b; "
            "assert hrjax.boost is b.boost and hrjax.BoostResult is b.BoostResult; "
            "from hrjax.pipeline.networks import load_models; assert hrjax.load_models is load_models; print('ok')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


def test_unavailable_device_is_a_usage_error(tmp_path, images, weights_dir):
    r = invoke(["boost", images / "good_a.png", "--output", tmp_path / "o", "--weights-dir", weights_dir,
                "--device", "tpu", "--no-cache"])
    assert r.exit_code == 2, r.output
    assert "--device tpu" in r.output and "no tpu device" in r.output
    assert not (tmp_path / "o" / "good_a.png").exists()


def test_a_grouped_conv_kernel_that_cannot_build_is_a_usage_error(tmp_path, images, weights_dir, monkeypatch):
    """``--grouped-conv kernel`` where hrjax's CPU kernel cannot be built (no C++ compiler): exit 2 before any
    image, naming the option (``auto`` would fall back to packed instead: test_grouped_conv)."""
    from hrjax.ops import grouped_conv

    monkeypatch.setattr(grouped_conv, "available", lambda: False)
    r = invoke(["boost", images / "good_a.png", "--output", tmp_path / "o", "--weights-dir", weights_dir,
                "--grouped-conv", "kernel", "--no-cache"])
    assert r.exit_code == 2, r.output
    assert "--grouped-conv kernel" in r.output and "could not be built" in r.output
    assert not (tmp_path / "o" / "good_a.png").exists()


def test_unavailable_device_leaves_jax_usable():
    """select_device sets jax_platforms before JAX starts; when that platform is absent it puts the setting
    back, so the same process can still start its CPU backend (it once failed every later test in the worker)."""
    code = ("from hrjax.run.setup import select_device; from hrjax.run.exits import UsageError\n"
            "try:\n    select_device('tpu')\nexcept UsageError:\n    pass\n"
            "import jax; print(jax.devices()[0].platform)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "cpu", p.stderr[-2000:]


def test_grouped_conv_option_reaches_the_models(tmp_path, images, weights_dir, monkeypatch):
    """--grouped-conv (default: $HRJAX_GROUPED_CONV, else auto) is what load_models is given."""
    from hrjax.pipeline import networks
    from hrjax.weights.store import WeightsError

    seen = []

    def load_models(*args, grouped_impl="auto", **kwargs):
        seen.append(grouped_impl)
        raise WeightsError("stop here")
    monkeypatch.setattr(networks, "load_models", load_models)
    for args, env in (([], {"HRJAX_GROUPED_CONV": "split"}), (["--grouped-conv", "native"], {}), ([], {})):
        r = CliRunner().invoke(cli.app, [str(a) for a in ["boost", images / "good_a.png", "--output", tmp_path / "o",
                                         "--weights-dir", weights_dir, "--no-cache", *args]], env=env)
        assert r.exit_code == 2 and "stop here" in r.output, r.output
    assert seen == ["split", "native", "auto"]


def test_weights_list_shows_each_store_entry_and_its_architecture(small_weights_dir, tmp_path):
    """``hrjax weights list``: one row per installed model with its source, digest and tensor count; a merge net
    exported by train-merge shows the architecture it records, an official conversion the catalogue's."""
    r = invoke(["weights", "list", "--weights-dir", small_weights_dir])
    assert r.exit_code == 0, r.output
    cells = [line.replace("\u2502", " ").split() for line in r.output.splitlines()]  # rich's column rule
    rows = {c[0]: " ".join(c) for c in cells if c[:1] in (["mergenet"], ["midas_v21"])}
    assert " ".join(f"{k}={v}" for k, v in SMALL_MERGE_ARCHITECTURE.items()) in rows["mergenet"]
    assert "catalogue" in rows["midas_v21"] and "midas_v21-f6b98070.pt" in rows["midas_v21"]
    assert "not installed:" in r.output and "leres_res101" in r.output
    r = invoke(["weights", "list", "--weights-dir", tmp_path / "empty"])
    assert r.exit_code == 0 and "not installed: " in r.output and "mergenet" in r.output


# --------------------------------------------------------------------------------------------------------
# folder runs (synthetic weights, --mode r0: two MiDaS passes and one merge per image)


def test_folder_run_bad_inputs_resume_overwrite(tmp_path, images, small_weights_dir):
    out = tmp_path / "out"
    # the small merge net (conftest): this is about files, failures and resuming, not the maps' values
    args = ["boost", images, "--output", out, "--mode", "r0", "--weights-dir", small_weights_dir,
            "--save", "png16,npy,color", "--json"]
    # 1. as a subprocess through the console script (compilation cache: the session's, $HRJAX_CACHE_DIR)
    p = subprocess.run(console_script() + [str(a) for a in args], capture_output=True, text=True, timeout=900)
    assert p.returncode == 1, p.stderr
    recs = records(p.stdout)
    assert set(recs) == set(GOOD) | set(BAD)
    for name, reason in BAD.items():
        assert recs[name]["status"] == "failed" and reason in recs[name]["error"], recs[name]
        assert recs[name]["outputs"] == []
        assert "failed" in p.stderr and name.split(".")[0] in p.stderr
    for name, (h, w) in GOOD.items():
        r = recs[name]
        assert r["status"] == "done" and r["error"] is None, r
        assert r["input_shape"] == [h, w] and r["R"] >= 384 and r["n_patches"] == 0
        assert {"whole", "total", "read", "write"} <= set(r["timings"])
        stem = Path(name).stem
        png = cv2.imread(str(out / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        # min -> 0, max -> 65535 (65534 when float32 rounding of 65535*(max-min)/(max-min) truncates down)
        assert png.dtype == np.uint16 and png.shape == (h, w) and png.min() == 0 and png.max() >= 65534
        depth = np.load(out / f"{stem}.npy")
        assert depth.dtype == np.float32 and depth.shape == (h, w)
        np.testing.assert_array_equal(quantize_16bit(depth), png)
        d = (depth - depth.min()) / (depth.max() - depth.min())
        assert np.abs(d * 65535 - png).max() <= 1.0  # png = truncated 16-bit quantisation of the npy
        color = cv2.imread(str(out / f"{stem}_color.png"), cv2.IMREAD_UNCHANGED)
        assert color.dtype == np.uint8 and color.shape == (h, w, 3)
        assert sorted(Path(o).name for o in r["outputs"]) == sorted([f"{stem}.png", f"{stem}.npy",
                                                                      f"{stem}_color.png"])
    written = sorted(q.relative_to(out).as_posix() for q in out.rglob("*")
                     if q.is_file() and not q.relative_to(out).as_posix().startswith(RECORDS_DIR + "/"))
    assert written == sorted(f"{Path(n).stem}{s}" for n in GOOD for s in (".png", ".npy", "_color.png"))

    # 2. again (in process): finished images are skipped, untouched; the bad ones fail again
    old = 1_000_000_000
    for q in out.iterdir():
        os.utime(q, (old, old))
    r = invoke(args + ["--no-cache"])
    assert r.exit_code == 1, r.output
    recs = records(r.stdout)
    assert all(recs[n]["status"] == "skipped" for n in GOOD) and all(recs[n]["status"] == "failed" for n in BAD)
    assert all(q.stat().st_mtime == old for q in out.iterdir())

    # 3. --overwrite redoes them
    r = invoke(args + ["--no-cache", "--overwrite", "--quiet"])
    assert r.exit_code == 1
    recs = records(r.stdout)
    assert all(recs[n]["status"] == "done" for n in GOOD)
    assert all(q.stat().st_mtime != old for q in out.iterdir())


def test_recursive_folder_keeps_subfolders(tmp_path, images, weights_dir, monkeypatch):
    import hrjax.host_memory as hm

    # the heap is given back after each image (and at the run's end), not only by the releaser thread, which
    # sees no free heap here (hrjax.host_memory)
    released = []
    monkeypatch.setattr(hm, "free_heap_bytes", lambda: 0)
    monkeypatch.setattr(hm, "release_free_memory", lambda: released.append(1) or True)
    out = tmp_path / "out"
    r = invoke(["boost", images / "sub", images / "good_a.png", "--output", out, "--mode", "r0",
                "--weights-dir", weights_dir, "--no-cache", "--output-resolution", "native", "--json"])
    assert r.exit_code == 0, r.output
    assert len(released) == (3 if hm._MALLOC_TRIM is not None else 2)  # two images, and the releaser's exit
    assert [rec["status"] for rec in records(r.stdout).values()] == ["done", "done"]
    assert cv2.imread(str(out / "deeper.png"), cv2.IMREAD_UNCHANGED).shape == (1024, 1024)  # native = 1024^2
    assert (out / "good_a.png").is_file()
    r = invoke(["boost", images, "--recursive", "--output", out, "--mode", "r0", "--weights-dir", weights_dir,
                "--no-cache", "--json", "--max-pixels", "1000"])
    recs = records(r.stdout)
    assert r.exit_code == 1
    assert recs["deeper.png"]["key"] == "sub/deeper" and recs["deeper.png"]["status"] == "failed"
    assert "over the limit of 1000" in recs["deeper.png"]["error"]


# --------------------------------------------------------------------------------------------------------
# heavy: the Final golden through the CLI


def _golden_final(golden):
    return np.load(golden / "pipeline" / "lunch_640_Final.npz")


@pytest.mark.heavy
def test_cli_final_png_matches_golden(tmp_path, golden, weights_dir, capsys):
    out = tmp_path / "out"
    r = invoke(["boost", golden / "images" / "lunch_640.png", "--output", out, "--mode", "final",
                "--max-res", "2200", "--weights-dir", weights_dir, "--no-cache"])
    assert r.exit_code == 0, r.output
    png = cv2.imread(str(out / "lunch_640.png"), cv2.IMREAD_UNCHANGED)
    gold = _golden_final(golden)["written_png"]
    assert png.dtype == np.uint16 and png.shape == gold.shape
    lsb = int(np.abs(png.astype(np.int64) - gold.astype(np.int64)).max())
    with capsys.disabled():
        print(f"\nhrjax boost lunch_640 Final vs golden written_png: max {lsb} LSB")
    assert lsb <= 8


@pytest.mark.heavy
def test_cli_save_whole_and_patches_match_golden(tmp_path, golden, weights_dir, capsys):
    out = tmp_path / "out"
    r = invoke(["boost", golden / "images" / "lunch_640.png", "--output", out, "--mode", "final",
                "--max-res", "2200", "--weights-dir", weights_dir, "--no-cache", "--save", "npy",
                "--save-whole", "--save-patches", "--json"])
    assert r.exit_code == 0, r.output
    g = _golden_final(golden)
    h, w = g["written_png"].shape
    whole = cv2.imread(str(out / "whole" / "lunch_640.png"), cv2.IMREAD_UNCHANGED)
    whole_gold = quantize_16bit(cv2.resize(g["whole_double"], (w, h), interpolation=cv2.INTER_CUBIC))
    index = json.loads((out / "patches" / "lunch_640.json").read_text())
    assert index["patch_ids"] == g["patch_ids"].tolist()
    assert len(index["files"]) == int(g["n_patches"])
    first = cv2.imread(str(out / "patches" / f"lunch_640_{int(g['patch_ids'][0]):04d}.png"), cv2.IMREAD_UNCHANGED)
    assert first.shape == (1024, 1024)
    depth = np.load(out / "lunch_640.npy")
    errs = {"whole": int(np.abs(whole.astype(np.int64) - whole_gold).max()),
            "patch_000": int(np.abs(first.astype(np.int64) - quantize_16bit(g["patch_000_double"])).max()),
            "written_float": float(np.abs(depth - g["written_float"]).max())}
    with capsys.disabled():
        print(f"\n--save-whole/--save-patches vs golden: {errs}")
    assert errs["whole"] <= 8 and errs["patch_000"] <= 8 and errs["written_float"] <= 1e-4


def test_missing_merge_weights_dir_is_a_usage_error(tmp_path, weights_dir):
    from typer.testing import CliRunner

    import cli

    img = tmp_path / "a.png"
    import cv2
    import numpy as np
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    result = CliRunner().invoke(cli.app, ["boost", str(img), "--output", str(tmp_path / "out"),
                                          "--weights-dir", str(weights_dir), "--merge-weights", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "hrjax weights convert --model mergenet" in result.output
    assert not (tmp_path / "out" / "a.png").exists()


def test_info_lists_devices_and_defaults(tmp_path):
    r = invoke(["info", "--weights-dir", tmp_path])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())  # rich wraps long lines (the tmp path) at the console width
    assert "backend cpu" in text and "device 0" in text
    assert "--max-batch 0 -> 1 per device, grouped convolutions 'kernel'" in text  # hrjax's CPU kernel
    assert "none installed" in text
    from hrjax.ops import grouped_conv

    built = grouped_conv.library_path(grouped_conv.compiler())
    assert built.is_file() and f"CPUgrouped-convkernel:{built}" in "".join(text.split())  # a wrapped path


def test_malloc_arena_limit_is_applied_on_glibc():
    import platform

    from hrjax.host_memory import limit_malloc_arenas

    ok = limit_malloc_arenas()
    assert isinstance(ok, bool)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert ok
