"""Where ``hrjax boost`` writes and what it resumes: hostile input names, name clashes, inputs that must never
become outputs, the per-image records, permissions, durability and non-finite results.

The networks are replaced by a fake (``fake_pipeline``: depth = a function of the image and the options, the
weights store is two hrjax.json files), so each CLI run here takes milliseconds; the real pipeline goes
through the same runner code in tests/test_cli.py."""

import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import cli
from hrjax import io
from hrjax.run.inputs import MAX_KEY_BYTES, collect_inputs
from hrjax.run.records import RECORDS_DIR


def _img(path: Path, seed: int, h: int = 48, w: int = 64) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), np.uint8))
    return path


def _fake_store(wd: Path, midas_sha: str = "a" * 64) -> Path:
    for model, sha in (("midas_v21", midas_sha), ("mergenet", "b" * 64)):
        (wd / model).mkdir(parents=True, exist_ok=True)
        (wd / model / "hrjax.json").write_text(json.dumps(dict(
            model=model, source_name=f"{model}.pt", source_sha256=sha, converter_version=1, n_tensors=1,
            n_values=1, created="2026-01-01T00:00:00")))
    return wd


@pytest.fixture
def fake_pipeline(monkeypatch, tmp_path):
    """Replace model loading and boosting; returns the list of (image name stem, config) boosted."""
    import hrjax.pipeline.boost as boost_mod
    import hrjax.pipeline.networks as models_mod

    calls = []
    nan_for = set()

    def fake_boost(models, img, config, keep_intermediates=False, progress=None, on_plan=None, on_patch=None,
                   keep_plain=False):
        calls.append(config)
        depth = img.mean(axis=-1).astype(np.float32) * (0.5 if config.mode == "r20" else 1.0)
        if nan_for and float(img.mean()) in nan_for:
            depth[0, 0] = np.nan
        plan = SimpleNamespace(R=384, K=0.2, n_patches=0, factor=None, boost=False, input_shape=img.shape)
        return SimpleNamespace(depth=depth, plan=plan, timings={"total": 0.0}, config=config, intermediates={},
                               plain=depth if keep_plain else None)

    monkeypatch.setattr(boost_mod, "boost", fake_boost)
    monkeypatch.setattr(models_mod, "load_models", lambda *a, **k: object())
    return SimpleNamespace(calls=calls, nan_for=nan_for, weights=_fake_store(tmp_path / "weights"))


def boost(fake, *args):
    r = CliRunner().invoke(cli.app, ["boost", *[str(a) for a in args], "--weights-dir", str(fake.weights),
                                     "--no-cache", "--mode", "r0", "--json"], catch_exceptions=False)
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    return r, recs


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------------------
# names


def test_hostile_names_stay_inside_output(tmp_path, fake_pipeline):
    """``..png`` (stem "."), ``...png``, unicode, a name with a backslash and two 240-byte names sharing
    their first 200 bytes: every output inside --output, names under the 255-byte limit, all distinct."""
    d = tmp_path / "in"
    names = ["..png", "...png", "été 日本語.png", "a\\b.png", "x" * 240 + "1.png", "x" * 240 + "2.png"]
    srcs = [_img(d / n, i) for i, n in enumerate(names)]
    out = tmp_path / "work" / "out"
    before = {p for p in tmp_path.rglob("*")}
    r, recs = boost(fake_pipeline, *srcs, "--output", out, "--save", "png16,npy,color")
    assert r.exit_code == 0, r.output
    assert [x["status"] for x in recs] == ["done"] * len(names)
    keys = [x["key"] for x in recs]
    assert keys[:4] == ["_", "__", "été 日本語", "a\\b"]
    assert len(set(keys)) == len(keys) and all(len(k.encode()) <= MAX_KEY_BYTES for k in keys)
    new = {p for p in tmp_path.rglob("*")} - before
    assert all(p == out or out in p.parents or p == out.parent for p in new), sorted(new)
    for x in recs:
        assert len(x["outputs"]) == 3 and all(Path(o).parent == out for o in x["outputs"])
        assert all(len(Path(o).name.encode()) <= 255 for o in x["outputs"])
    # the depth map written for each input is that input's (the fake depth is the image mean)
    for src, x in zip(srcs, recs):
        img = io.read_image(src)
        np.testing.assert_allclose(np.load(Path(x["outputs"][0]).with_suffix(".npy")),
                                   img.mean(-1).astype(np.float32))


def test_derived_names_never_collide(tmp_path, fake_pipeline):
    """a.png writes a_color.png with --save color, which is also the main output of an input a_color.png."""
    d = tmp_path / "in"
    _img(d / "a.png", 1)
    _img(d / "a_color.png", 2)
    _img(d / "B.png", 3)
    _img(d / "b.png", 4)                         # differs only in case: one file on case-insensitive disks
    out = tmp_path / "out"
    r, recs = boost(fake_pipeline, d, "--output", out, "--save", "png16,color")
    assert r.exit_code == 0, r.output
    by = {Path(x["input"]).name: x for x in recs}
    assert by["a.png"]["key"] != by["a_color.png"]["key"]
    outs = [o for x in recs for o in x["outputs"]]
    assert by["b.png"]["key"] == "b_2"
    assert len(outs) == 8 and len({o.casefold() for o in outs}) == 8
    assert "note:" in r.output and "taken by another input's outputs" in r.output
    # each output is its own input's (the fake depth is the image mean)
    for x in recs:
        png = cv2.imread([o for o in x["outputs"] if not o.endswith("_color.png")][0], cv2.IMREAD_UNCHANGED)
        assert np.array_equal(png, io.quantize_16bit(io.read_image(x["input"]).mean(-1).astype(np.float32)))
    # deterministic: the same keys again, and everything is resumed
    r2, recs2 = boost(fake_pipeline, d, "--output", out, "--save", "png16,color")
    assert [x["key"] for x in recs2] == [x["key"] for x in recs]
    assert [x["status"] for x in recs2] == ["skipped"] * 4


def test_collect_inputs_clash_rules(tmp_path):
    d = tmp_path / "in"
    for rel in ("a.png", "a_color.png", "b.jpg", "b.png/c.png", "whole/w.png"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(b"x")
    notes: list[str] = []
    jobs = collect_inputs([d], recursive=True, output=tmp_path / "out", notes=notes)
    # a sub-folder named like an output file gets an underscore: b.jpg's output b.png is a file
    assert [j.key for j in jobs] == ["a", "a_color_2", "b", "b.png_/c", "whole_/w"]
    assert jobs[1].note and "a_color_2" in jobs[1].note and any("a_color_2" in n for n in notes)
    # input order decides: a_color first keeps its name, a is renamed
    jobs = collect_inputs([d / "a_color.png", d / "a.png"])
    assert [j.key for j in jobs] == ["a_color", "a_2"]


# --------------------------------------------------------------------------------------------------------
# inputs are never outputs


def test_output_folder_equal_to_input_folder(tmp_path, fake_pipeline):
    d = tmp_path / "photos"
    _img(d / "a.png", 1)
    _img(d / "b.jpg", 2)
    original = files_under(d)
    r, recs = boost(fake_pipeline, d, "--output", d, "--save", "png16,npy,color")
    assert r.exit_code == 0, r.output                       # not "no images found"
    assert sorted(Path(x["input"]).name for x in recs) == ["a.png", "b.jpg"]
    assert all(x["status"] == "done" for x in recs)
    after = files_under(d)
    assert all(after[k] == v for k, v in original.items())  # inputs untouched
    assert not {o for x in recs for o in x["outputs"]} & {str(d / k) for k in original}
    # rerun: the outputs are not taken for inputs; both skipped; still nothing overwritten with --overwrite
    r, recs = boost(fake_pipeline, d, "--output", d, "--save", "png16,npy,color")
    assert sorted((Path(x["input"]).name, x["status"]) for x in recs) == [("a.png", "skipped"), ("b.jpg", "skipped")]
    r, recs = boost(fake_pipeline, d, "--output", d, "--save", "png16,npy,color", "--overwrite")
    assert sorted((Path(x["input"]).name, x["status"]) for x in recs) == [("a.png", "done"), ("b.jpg", "done")]
    assert all(files_under(d)[k] == v for k, v in original.items())
    # a shell glob naming the outputs explicitly: they are left out too
    r, recs = boost(fake_pipeline, *sorted(d.glob("*.png")), "--output", d)
    assert [Path(x["input"]).name for x in recs] == ["a.png"] and "left out" in r.output


def test_output_folder_inside_and_around_the_input_folder(tmp_path, fake_pipeline):
    d = tmp_path / "photos"
    _img(d / "a.png", 1)
    _img(d / "sub" / "b.png", 2)
    for extra in ([], ["--recursive"]):
        r, recs = boost(fake_pipeline, d, "--output", d / "depth", *extra)
        assert r.exit_code == 0, r.output
        assert len(recs) == 1 + bool(extra)
    r, recs = boost(fake_pipeline, d, "--output", d / "depth", "--recursive")
    assert [x["status"] for x in recs] == ["skipped", "skipped"]  # depth/ was not scanned as input
    # the input folder inside the output folder
    r, recs = boost(fake_pipeline, d / "sub", "--output", d)
    assert r.exit_code == 0 and [Path(x["input"]).name for x in recs] == ["b.png"], r.output


# --------------------------------------------------------------------------------------------------------
# resume


def test_resume_redoes_what_changed(tmp_path, fake_pipeline):
    d = tmp_path / "in"
    a = _img(d / "a.png", 1)
    out = tmp_path / "out"

    def status(*extra):
        r, recs = boost(fake_pipeline, a, "--output", out, "--save", "png16,npy", *extra)
        assert len(recs) == 1, r.output
        return recs[0]["status"]

    assert status() == "done"
    assert status() == "skipped"
    assert status("--max-res", "500") == "done"           # an option that changes the result
    assert status("--max-res", "500") == "skipped"
    assert status() == "done"                             # and back
    assert status("--output-resolution", "native") == "done"
    assert status() == "done"
    _fake_store(fake_pipeline.weights, midas_sha="c" * 64)  # other weights
    assert status() == "done"
    assert status() == "skipped"
    (out / "a.png").write_bytes(b"")                      # a zero-length output (power loss)
    assert status() == "done"
    with open(out / "a.npy", "r+b") as f:                 # a truncated one
        f.truncate(100)
    assert status() == "done"
    (out / RECORDS_DIR / "a.json").unlink()        # outputs without a record
    assert status() == "done"
    _img(a, 7)                                            # the input changed
    assert status() == "done"
    os.utime(a, ns=(1, 1))                                # only its time changed: same content, kept
    assert status() == "skipped"
    assert status("--overwrite") == "done"
    rec = json.loads((out / RECORDS_DIR / "a.json").read_text())
    assert rec["status"] == "done" and rec["identity"]["mode"] == "r0"
    assert rec["identity"]["weights"]["midas_v21"]["source_sha256"] == "c" * 64
    assert set(rec["outputs"]) == {"a.png", "a.npy"} and all(v > 0 for v in rec["outputs"].values())
    assert status("--save", "color") == "done"             # an output not made before


def test_failure_while_writing_leaves_no_partial_outputs(tmp_path, fake_pipeline, monkeypatch):
    a = _img(tmp_path / "in" / "a.png", 1)
    out = tmp_path / "out"
    real = io.write_png16

    def broken(path, depth):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io, "write_png16", broken)
    r, recs = boost(fake_pipeline, a, "--output", out, "--save", "npy,png16")
    assert r.exit_code == 1 and recs[0]["status"] == "failed" and "No space left" in recs[0]["error"]
    assert [p.name for p in out.iterdir() if p.is_file()] == []  # the .npy written first was removed
    assert json.loads((out / RECORDS_DIR / "a.json").read_text())["status"] == "failed"
    monkeypatch.setattr(io, "write_png16", real)
    r, recs = boost(fake_pipeline, a, "--output", out, "--save", "npy,png16")
    assert recs[0]["status"] == "done"


# --------------------------------------------------------------------------------------------------------
# non-finite results, permissions, durability


def test_nan_depth_map_fails_cleanly(tmp_path, fake_pipeline):
    d = tmp_path / "in"
    a, b = _img(d / "a.png", 1), _img(d / "b.png", 2)
    fake_pipeline.nan_for.add(float(io.read_image(a).mean()))
    out = tmp_path / "out"
    r, recs = boost(fake_pipeline, d, "--output", out, "--save", "png16,npy,color")
    assert r.exit_code == 1
    by = {Path(x["input"]).name: x for x in recs}
    assert by["a.png"]["status"] == "failed" and "non-finite" in by["a.png"]["error"]
    assert "1 NaN/infinite values" in by["a.png"]["error"] and by["a.png"]["outputs"] == []
    assert by["b.png"]["status"] == "done"
    assert not list(out.glob("a*")) and not (out / RECORDS_DIR / "a.json").exists()


def test_float_image_out_of_range_fails_cleanly(tmp_path, fake_pipeline):
    hdr = tmp_path / "in" / "hdr.tif"
    hdr.parent.mkdir()
    assert cv2.imwrite(str(hdr), np.full((48, 64, 3), 3.5, np.float32))
    r, recs = boost(fake_pipeline, hdr, "--output", tmp_path / "out")
    assert r.exit_code == 1 and recs[0]["status"] == "failed" and "outside [0, 1]" in recs[0]["error"]
    assert not fake_pipeline.calls


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_outputs_respect_the_umask(tmp_path, fake_pipeline, umask):
    a = _img(tmp_path / "in" / "a.png", 1)
    old = os.umask(umask)
    try:
        r, recs = boost(fake_pipeline, a, "--output", tmp_path / "out", "--save", "png16,npy,color")
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    files = [Path(o) for o in recs[0]["outputs"]] + [tmp_path / "out" / RECORDS_DIR / "a.json"]
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, (f, oct(f.stat().st_mode))


def test_atomic_write_fsyncs_file_and_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    io.atomic_write_bytes(tmp_path / "x" / "f.bin", b"data")
    assert synced == [False, True]  # the file, then its folder (after the rename)
    assert (tmp_path / "x" / "f.bin").read_bytes() == b"data"
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["f.bin"]  # no temporary left
