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


def test_two_process_run_matches_single_process(tmp_path, weights_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate(NAMES):
        y, x = np.mgrid[0:72, 0:96]
        img = np.stack([x * 2.5, y * 3.0 + 20 * i, (x + y) % 50 * 5], -1) + rng.integers(0, 25, (72, 96, 3))
        assert cv2.imwrite(str(folder / name), img.clip(0, 255).astype(np.uint8))
    cache = tmp_path / "cache"

    single = subprocess.run(_boost(folder, tmp_path / "single", weights_dir, cache), capture_output=True,
                            text=True, timeout=900, env=_env(), cwd=ROOT)
    assert single.returncode == 0, single.stderr

    runs = _run_two(folder, tmp_path / "multi", weights_dir, cache)
    for i, p in enumerate(runs):
        assert p.returncode == 0, f"process {i}:\n{p.stderr}"
    # Each process did its round-robin share of the sorted inputs, and only that.
    done = [sorted(Path(json.loads(line)["input"]).name for line in p.stdout.splitlines() if line.strip())
            for p in runs]
    assert done == [["a.png", "c.png"], ["b.png"]]
    assert "process 0/2" in runs[0].stderr and "process 1/2" in runs[1].stderr
    assert "3 image(s): 3 done, 0 skipped, 0 failed over 2 processes" in runs[0].stderr
    # Same files, byte for byte, as the single-process run.
    multi, ref = _files(tmp_path / "multi"), _files(tmp_path / "single")
    assert sorted(multi) == sorted(ref) == sorted(f"{Path(n).stem}{s}" for n in NAMES for s in (".png", ".npy"))
    assert multi == ref
    records = sorted(q.name for q in (tmp_path / "multi" / ".hrjax").iterdir())
    assert records == sorted(f"{Path(n).stem}.json" for n in NAMES)

    # A relaunch resumes: every image is skipped and nothing is rewritten.
    again = _run_two(folder, tmp_path / "multi", weights_dir, cache)
    assert [p.returncode for p in again] == [0, 0]
    assert "3 image(s): 0 done, 3 skipped, 0 failed over 2 processes" in again[0].stderr
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
    from hrjax import runner

    mesh = runner.mesh_for("cpu", n)   # conftest gives this process 8 CPU devices
    if n == 0:
        assert mesh is None            # CPU: one device unless asked
    else:
        assert mesh.devices.size == 2
    with pytest.raises(runner.UsageError, match="only 8"):
        runner.mesh_for("cpu", 9)
