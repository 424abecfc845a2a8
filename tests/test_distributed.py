"""Many hosts: a 2-process ``jax.distributed`` folder run on 127.0.0.1 splits the inputs and writes the same
files as a single-process run; a relaunch resumes (everything skipped); the input split is deterministic."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from hrjax import distributed

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("a.png", "b.png", "c.png")
# the two-process run: one image each (each image is ~4 s of network work per process on 2 cores; the uneven
# round-robin split is test_shard_is_a_deterministic_partition's)
RUN_NAMES = NAMES[:2]


def test_shard_is_a_deterministic_partition():
    items = [f"img{i:02d}" for i in range(11)]
    shards = [distributed.shard(items, distributed.ProcessInfo(i, 3)) for i in range(3)]
    assert sorted(sum(shards, [])) == items
    assert shards[0] == items[0::3] and shards[2] == items[2::3]
    assert distributed.shard(items, distributed.ProcessInfo()) == items
    assert distributed.shard(items[:1], distributed.ProcessInfo(1, 2)) == []   # more processes than inputs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _boost(folder, out, weights_dir, cache, extra=()) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "boost", str(folder), "--output", str(out), "--mode", "r0",
            "--weights-dir", str(weights_dir), "--cache-dir", str(cache), "--save", "png16,npy", "--json",
            *extra]


def _env() -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device per process, like a real host
    return env


def _run_two(folder, out, weights_dir, cache) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    procs = [subprocess.Popen(_boost(folder, out, weights_dir, cache,
                                     ["--distributed", "--coordinator", f"127.0.0.1:{port}",
                                      "--num-processes", "2", "--process-id", str(i)]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
             for i in range(2)]
    done = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return done


def _files(folder: Path) -> dict[str, bytes]:
    """The outputs (the per-image records in .hrjax/ hold timings-free metadata, compared separately)."""
    return {q.relative_to(folder).as_posix(): q.read_bytes() for q in sorted(folder.rglob("*"))
            if q.is_file() and ".hrjax" not in q.relative_to(folder).parts}


def test_two_process_run_matches_single_process(tmp_path, small_weights_dir, compile_cache):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate(RUN_NAMES):
        y, x = np.mgrid[0:72, 0:96]
        img = np.stack([x * 2.5, y * 3.0 + 20 * i, (x + y) % 50 * 5], -1) + rng.integers(0, 25, (72, 96, 3))
        assert cv2.imwrite(str(folder / name), img.clip(0, 255).astype(np.uint8))
    cache = compile_cache  # the session's: the five processes below compile each program once between them

    weights_dir = small_weights_dir  # the small merge net (conftest): what is tested is the split and the files
    single = subprocess.run(_boost(folder, tmp_path / "single", weights_dir, cache), capture_output=True,
                            text=True, timeout=900, env=_env(), cwd=ROOT)
    assert single.returncode == 0, single.stderr

    runs = _run_two(folder, tmp_path / "multi", weights_dir, cache)
    for i, p in enumerate(runs):
        assert p.returncode == 0, f"process {i}:\n{p.stderr}"
    # Each process did its round-robin share of the sorted inputs, and only that.
    done = [sorted(Path(json.loads(line)["input"]).name for line in p.stdout.splitlines() if line.strip())
            for p in runs]
    assert done == [["a.png"], ["b.png"]]
    assert "process 0/2" in runs[0].stderr and "process 1/2" in runs[1].stderr
    assert "2 image(s): 2 done, 0 skipped, 0 failed over 2 processes" in runs[0].stderr
    # Same files, byte for byte, as the single-process run.
    multi, ref = _files(tmp_path / "multi"), _files(tmp_path / "single")
    assert sorted(multi) == sorted(ref) == sorted(f"{Path(n).stem}{s}" for n in RUN_NAMES for s in (".png", ".npy"))
    assert multi == ref
    records = sorted(q.name for q in (tmp_path / "multi" / ".hrjax").iterdir())
    assert records == sorted(f"{Path(n).stem}.json" for n in RUN_NAMES)

    # A relaunch resumes: every image is skipped and nothing is rewritten.
    again = _run_two(folder, tmp_path / "multi", weights_dir, cache)
    assert [p.returncode for p in again] == [0, 0]
    assert "2 image(s): 0 done, 2 skipped, 0 failed over 2 processes" in again[0].stderr
    assert _files(tmp_path / "multi") == ref


def test_cluster_options_need_distributed(tmp_path, weights_dir):
    from typer.testing import CliRunner

    import cli

    r = CliRunner().invoke(cli.app, ["boost", str(tmp_path), "-o", str(tmp_path / "o"), "--coordinator", "x:1"])
    assert r.exit_code == 2 and "need --distributed" in r.output
    r = CliRunner().invoke(cli.app, ["boost", str(tmp_path), "-o", str(tmp_path / "o"), "--distributed",
                                     "--coordinator", "x:1"])
    assert r.exit_code == 2 and "go together" in r.output


@pytest.mark.parametrize("n", [0, 2])
def test_local_devices_mesh(n):
    from hrjax.run.exits import UsageError
    from hrjax.run.setup import mesh_for

    mesh = mesh_for("cpu", n)   # conftest gives this process 8 CPU devices
    if n == 0:
        assert mesh is None            # CPU: one device unless asked
    else:
        assert mesh.devices.size == 2
    with pytest.raises(UsageError, match="only 8"):
        mesh_for("cpu", 9)


def _run_pair(args_for, timeout=600):
    """Start process 0 and 1 with ``args_for(i)`` (extra CLI arguments); returns their completed processes.

    No wall-time bound (a loaded machine would fail it): a hang shows as the timeout; that a failure travelled
    through hrjax's own channel, not JAX's heartbeat, shows in the message the other process prints."""
    port = _free_port()
    procs = [subprocess.Popen(args_for(i) + ["--distributed", "--coordinator", f"127.0.0.1:{port}",
                                             "--num-processes", "2", "--process-id", str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
             for i in range(2)]
    done = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return done


def _tiny_folder(folder: Path, names=NAMES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        assert cv2.imwrite(str(folder / name), np.full((48, 64, 3), 25 * i, np.uint8))
    return folder


def test_a_process_failing_early_ends_both_with_its_reason(tmp_path, weights_dir):
    """Process 1 has no weights (a usage error on that host only): it exits 2; process 0 is told, before any
    image is processed, and exits 1 naming process 1 and the reason, well before JAX's heartbeat (100 s)."""
    folder = _tiny_folder(tmp_path / "in")
    empty = tmp_path / "no-weights"
    empty.mkdir()
    runs = _run_pair(lambda i: _boost(folder, tmp_path / "out", weights_dir if i == 0 else empty,
                                       tmp_path / "cache"))
    assert runs[1].returncode == 2 and "missing model weights" in runs[1].stderr, runs[1].stderr
    assert runs[0].returncode == 1, runs[0].stderr
    msg = " ".join(runs[0].stderr.split())
    assert "process 1 failed: missing model weights" in msg and "stopping" in msg, runs[0].stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.png"))


def test_processes_with_different_inputs_refuse_to_start(tmp_path, weights_dir):
    folder = _tiny_folder(tmp_path / "in")
    extra = _tiny_folder(tmp_path / "extra", ("z.png",))
    runs = _run_pair(lambda i: _boost(folder, tmp_path / "out", weights_dir, tmp_path / "cache")
                     + ([str(extra / "z.png")] if i == 1 else []))
    for i, p in enumerate(runs):
        assert p.returncode == 2, (i, p.stderr)
        assert "different input lists" in " ".join(p.stderr.split()), p.stderr


@pytest.mark.heavy
def test_a_process_interrupted_mid_run_stops_the_other(tmp_path, weights_dir):
    """Process 1 is interrupted (SIGINT) after its first image: it publishes "interrupted" and exits 130;
    process 0, busy with its own images, stops within the network call it is in and exits 1 naming process 1.
    A relaunch then resumes (the finished images are skipped)."""
    import signal

    folder = _tiny_folder(tmp_path / "in", tuple(f"{c}.png" for c in "abcdefghij"))
    port = _free_port()
    procs = [subprocess.Popen(_boost(folder, tmp_path / "out", weights_dir, tmp_path / "cache")
                              + ["--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                                 "--process-id", str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
             for i in range(2)]
    try:
        first = procs[1].stdout.readline()  # its first JSON record: an image is done
        assert json.loads(first)["status"] == "done"
        procs[1].send_signal(signal.SIGINT)
        out0, err0 = procs[0].communicate(timeout=300)
        out1, err1 = procs[1].communicate(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[1].returncode == 130, err1
    assert procs[0].returncode == 1, err0
    assert "process 1 failed: interrupted" in " ".join(err0.split())
    done0 = [json.loads(line) for line in out0.splitlines() if line.strip()]
    assert len(done0) < 5, "process 0 finished its whole share instead of stopping"
    assert not list((tmp_path / "out").glob(".*.partial")) and not list((tmp_path / "out").glob("*.partial"))
