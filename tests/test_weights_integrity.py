"""Weights integrity: ``weights convert`` checks the source's sha256 against the catalogue (SPEC 12), the store
records a digest of the converted arrays, and loading verifies it."""

import dataclasses
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import cli
from hrjax.convert.checkpoint import UnknownCheckpoint, convert_checkpoint, sha256_of
from hrjax.weights import catalog, store


def test_convert_refuses_a_checkpoint_not_in_the_catalogue(tmp_path, mergenet_checkpoint):
    """The synthetic checkpoint is not the official file: refused before anything is read or written, unless
    --allow-unknown, which hrjax.json records."""
    digest = sha256_of(mergenet_checkpoint)
    assert digest != catalog.get("mergenet").checkpoint.sha256
    with pytest.raises(UnknownCheckpoint) as e:
        convert_checkpoint("mergenet", mergenet_checkpoint, tmp_path / "w")
    msg = str(e.value)
    assert digest in msg and catalog.get("mergenet").checkpoint.sha256 in msg and "--allow-unknown" in msg
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())
    # through the CLI: exit 1 and the same reason
    r = CliRunner().invoke(cli.app, ["weights", "convert", "--model", "mergenet", "--source",
                                     str(mergenet_checkpoint), "--weights-dir", str(tmp_path / "w")])
    assert r.exit_code == 1 and "--allow-unknown" in " ".join(r.output.split()), r.output


def test_convert_records_which_check_passed(tmp_path, mergenet_checkpoint, weights_dir, monkeypatch):
    digest = sha256_of(mergenet_checkpoint)
    # the session store was converted from the same synthetic file with allow_unknown=True
    info = store.read_info(weights_dir, "mergenet")
    assert info.source_check == "allow-unknown" and info.source_sha256 == digest
    assert info.arrays_sha256 and len(info.arrays_sha256) == 64
    # the CLI flag reaches the check: an unknown file gets past it and fails on its content instead
    junk = tmp_path / "latest_net_G.pth"
    junk.write_bytes(b"not a checkpoint")
    args = ["weights", "convert", "--model", "mergenet", "--source", str(junk), "--weights-dir", str(tmp_path / "j")]
    r = CliRunner().invoke(cli.app, args)
    assert r.exit_code == 1 and "--allow-unknown" in " ".join(r.output.split())
    r = CliRunner().invoke(cli.app, args + ["--allow-unknown"])
    assert r.exit_code == 1 and "not a readable PyTorch checkpoint" in " ".join(r.output.split()), r.output
    # the same file as if it were the official one (the catalogue's hash patched to its digest)
    entry = catalog.get("mergenet")
    official = dataclasses.replace(entry, checkpoint=dataclasses.replace(entry.checkpoint, sha256=digest))
    monkeypatch.setitem(catalog.MODELS, "mergenet", official)
    convert_checkpoint("mergenet", mergenet_checkpoint, tmp_path / "o")
    info2 = store.read_info(tmp_path / "o", "mergenet")
    assert info2.source_check == "official" and info2.arrays_sha256 == info.arrays_sha256


def _tiny_store(wd, values):
    info = store.WeightsInfo(model="mergenet", source_name="x.pth", source_sha256="0" * 64,
                             converter_version=store.CONVERTER_VERSION, n_tensors=2, n_values=5,
                             created=store.now_iso())
    return store.save(wd, info, {"a.weight": np.asarray(values[:3], np.float32),
                                 "b.bias": np.asarray(values[3:], np.float32)})


def test_tampered_store_is_refused_on_load(tmp_path):
    import orbax.checkpoint as ocp

    wd = tmp_path / "w"
    dest = _tiny_store(wd, [1, 2, 3, 4, 5])
    flat, info = store.load_flat(wd, "mergenet")
    assert info.arrays_sha256 == store.arrays_digest(flat)
    np.testing.assert_array_equal(flat["a.weight"], [1, 2, 3])
    # replace the arrays behind hrjax.json's back: same keys, shapes and counts, one value changed
    import shutil
    shutil.rmtree(dest / store.PARAMS_DIR)
    with ocp.StandardCheckpointer() as ck:
        ck.save(dest / store.PARAMS_DIR, {"a.weight": np.asarray([1, 2, 3], np.float32),
                                          "b.bias": np.asarray([4, 6], np.float32)})
    raw = json.loads((dest / store.INFO_FILE).read_text())
    raw["param_files"] = store.file_sizes(dest / store.PARAMS_DIR)  # the file record updated too: the digest
    (dest / store.INFO_FILE).write_text(json.dumps(raw))            # still tells
    with pytest.raises(store.WeightsError, match="digest") as e:
        store.load_flat(wd, "mergenet")
    assert "convert the checkpoint again" in str(e.value)
    # load_model names the commands that fix it
    from hrjax.weights.load import load_model
    with pytest.raises(store.WeightsError, match="hrjax weights convert --model mergenet"):
        load_model("mergenet", wd)


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_cut_or_missing_file_is_refused_before_orbax_reads(tmp_path, monkeypatch, damage):
    """The store records the size of every file orbax wrote: one cut short or gone (an interrupted copy) is named
    in the error, and orbax never starts reading (failing midway, its in-flight reads printed hundreds of "Event
    loop is closed" tracebacks around the error)."""
    import orbax.checkpoint as ocp

    dest = _tiny_store(tmp_path / "w", [1, 2, 3, 4, 5])
    recorded = store.read_info(tmp_path / "w", "mergenet").param_files
    assert recorded == store.file_sizes(dest / store.PARAMS_DIR) and len(recorded) > 3
    name = max(recorded, key=recorded.get)
    victim = dest / store.PARAMS_DIR / name
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[: recorded[name] // 2])
        want = f"{name} has {recorded[name] // 2} bytes, {recorded[name]} were written"
    else:
        victim.unlink()
        want = f"{name} is missing"

    def no_orbax(*a, **k):
        raise AssertionError("orbax was asked to read a damaged store")
    monkeypatch.setattr(ocp, "StandardCheckpointer", no_orbax)
    with pytest.raises(store.WeightsError, match="incomplete or damaged") as e:
        store.load_flat(tmp_path / "w", "mergenet")
    assert want in str(e.value) and "convert the checkpoint again" in str(e.value)


def test_weights_list_says_whether_each_store_is_complete(tmp_path):
    """``hrjax weights list`` compares the recorded file sizes (stat calls only): complete, DAMAGED with what is
    wrong and the commands that fix it, or not recorded (a store written before the record); ``hrjax info``
    marks a damaged store."""
    wd = tmp_path / "w"
    dest = _tiny_store(wd, [1, 2, 3, 4, 5])
    args = ["weights", "list", "--weights-dir", str(wd)]

    def listed():
        r = CliRunner().invoke(cli.app, args, terminal_width=200)
        assert r.exit_code == 0, r.output
        cells = [line.replace("\u2502", " ").split() for line in r.output.splitlines()]  # rich's column rule
        return " ".join(next(c for c in cells if c[:1] == ["mergenet"])), " ".join(r.output.split())

    assert listed()[0].endswith(" complete")
    recorded = store.read_info(wd, "mergenet").param_files
    name = max(recorded, key=recorded.get)
    (dest / store.PARAMS_DIR / name).write_bytes(b"")
    row, text = listed()
    assert row.endswith(" DAMAGED")
    assert f"mergenet is damaged ({name} has 0 bytes" in text and "hrjax weights download --model mergenet" in text
    r = CliRunner().invoke(cli.app, ["info", "--weights-dir", str(wd)], terminal_width=200)
    assert r.exit_code == 0 and "mergenet (damaged: see hrjax weights list)" in r.output, r.output
    raw = json.loads((dest / store.INFO_FILE).read_text())
    del raw["param_files"]
    (dest / store.INFO_FILE).write_text(json.dumps(raw))
    row, text = listed()
    assert row.endswith(" not recorded") and "is damaged" not in text


def test_a_store_without_the_file_record_still_loads(tmp_path):
    """Stores written before the file record (2026-12-07) load as before: the arrays' digest is checked."""
    dest = _tiny_store(tmp_path / "w", [1, 2, 3, 4, 5])
    raw = json.loads((dest / store.INFO_FILE).read_text())
    del raw["param_files"]
    (dest / store.INFO_FILE).write_text(json.dumps(raw))
    flat, info = store.load_flat(tmp_path / "w", "mergenet")
    assert info.param_files is None
    np.testing.assert_array_equal(flat["b.bias"], [4, 5])


def test_store_without_a_digest_is_refused(tmp_path):
    dest = _tiny_store(tmp_path / "w", [1, 2, 3, 4, 5])
    raw = json.loads((dest / store.INFO_FILE).read_text())
    raw["arrays_sha256"] = None
    (dest / store.INFO_FILE).write_text(json.dumps(raw))
    with pytest.raises(store.WeightsError, match="no digest"):
        store.load_flat(tmp_path / "w", "mergenet")


def test_a_stored_architecture_that_does_not_build_is_a_clear_error(tmp_path, small_weights_dir):
    """A store's recorded architecture (train-merge's export) is what the loader builds; one that does not
    build the model names the store and the architecture."""
    import shutil

    from flax import nnx

    from hrjax.weights.load import load_model
    from hrjax.weights.store import INFO_FILE, WeightsError

    graphdef, state = load_model("mergenet", small_weights_dir)
    assert nnx.merge(graphdef, state).input_size == 64
    wd = tmp_path / "w"
    shutil.copytree(small_weights_dir / "mergenet", wd / "mergenet")
    info = json.loads((wd / "mergenet" / INFO_FILE).read_text())
    info["architecture"] = {"ngf": 4, "num_downs": 3}
    (wd / "mergenet" / INFO_FILE).write_text(json.dumps(info))
    with pytest.raises(WeightsError, match="architecture"):
        load_model("mergenet", wd)
