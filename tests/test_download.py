"""Downloads against a local HTTP server on 127.0.0.1 (started by the tests, bounded, stops by itself)."""

import dataclasses
import hashlib
import http.server
import json
import os
import pty
import subprocess
import sys
import threading
import time

import pytest

from hrjax.weights import catalog, store
from hrjax.convert.install import download_and_convert
from hrjax.weights.download import DownloadError, PlainProgress, fetch


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}
    requests: list = []  # every path asked for, in order

    def log_message(self, *args):
        pass

    def do_GET(self):
        name = self.path.lstrip("/")
        self.requests.append(name)
        if name.startswith("truncated/"):
            data = self.files[name.split("/", 1)[1]]
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.close()  # the server "dies" mid-transfer
            return
        if name not in self.files:
            self.send_error(404)
            return
        data = self.files[name]
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.timeout = 10
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler.files
    httpd.shutdown()
    httpd.server_close()


def _entry(model, sha256, urls):
    base = catalog.get(model)
    return dataclasses.replace(base, checkpoint=dataclasses.replace(base.checkpoint, sha256=sha256, urls=tuple(urls)))


def _leftovers(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_download_falls_back_to_mirror_and_converts(tmp_path, server, mergenet_checkpoint):
    base, files = server
    data = mergenet_checkpoint.read_bytes()
    files["latest_net_G.pth"] = data
    entry = _entry("mergenet", hashlib.sha256(data).hexdigest(), [f"{base}/gone/latest_net_G.pth",
                                                                  f"{base}/latest_net_G.pth"])
    logs = []
    dest = download_and_convert("mergenet", tmp_path, entry=entry, log=logs.append)
    assert any("/gone/" in m for m in logs) and logs[-3].endswith(f"{base}/latest_net_G.pth")
    assert logs[-2].startswith("  got latest_net_G.pth: ") and logs[-2].endswith("sha256 verified")
    info = store.read_info(tmp_path, "mergenet")
    assert dest == tmp_path.resolve() / "mergenet" and info.source_sha256 == hashlib.sha256(data).hexdigest()
    assert not (tmp_path / ".downloads").exists(), "downloaded source should be removed after conversion"


def test_wrong_hash_leaves_nothing(tmp_path, server):
    base, files = server
    files["small.pth"] = b"not the checkpoint you are looking for" * 100
    entry = _entry("mergenet", "0" * 64, [f"{base}/small.pth"])
    with pytest.raises(DownloadError, match="wrong sha256") as e:
        download_and_convert("mergenet", tmp_path, entry=entry)
    assert "hrjax weights convert --model mergenet" in str(e.value)
    assert [p for p in _leftovers(tmp_path) if not p.endswith(".downloads")] == []


def test_server_dying_mid_transfer_leaves_nothing(tmp_path, server):
    base, files = server
    data = bytes(range(256)) * 4096
    files["big.pth"] = data
    entry = _entry("mergenet", hashlib.sha256(data).hexdigest(), [f"{base}/truncated/big.pth"])
    with pytest.raises(DownloadError, match="truncated/big.pth"):
        fetch(entry, tmp_path / "dl")
    assert _leftovers(tmp_path / "dl") == []


def test_cli_download_offline_prints_manual_steps(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import cli

    dead = "http://127.0.0.1:9/latest_net_G.pth"  # discard port: nothing listens, connection refused
    monkeypatch.setitem(catalog.MODELS, "mergenet", _entry("mergenet", "0" * 64, [dead]))
    result = CliRunner().invoke(cli.app, ["weights", "download", "--model", "mergenet",
                                          "--weights-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "hrjax weights convert --model mergenet --source" in result.output
    assert "ConnectionError" in result.output
    assert not (tmp_path / "mergenet").exists()


# --------------------------------------------------------------------------------------------------------
# the command as a user runs it: in a terminal, without one, without torch


# Runs the real console entry point (cli.main) in a child process, with the mergenet catalogue entry pointed at
# the test server (its sha256 is the synthetic checkpoint's): everything else is what a user's shell runs.
_DRIVER = """
import dataclasses, json, os, sys
from hrjax.weights import catalog
cfg = json.loads(os.environ["HRJAX_TEST_ENTRY"])
base = catalog.MODELS["mergenet"]
catalog.MODELS["mergenet"] = dataclasses.replace(
    base, checkpoint=dataclasses.replace(base.checkpoint, sha256=cfg["sha256"], urls=tuple(cfg["urls"])))
import cli
sys.argv = ["hrjax", *cfg["args"]]
cli.main()
"""


def _run_in_pty(cfg: dict, timeout: float = 120) -> tuple[int, str]:
    """Run the driver with stdin/stdout/stderr on a pseudo-terminal (isatty() is true, like a shell)."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM", "COLUMNS")}
    env.update(TERM="xterm", COLUMNS="100", HRJAX_TEST_ENTRY=json.dumps(cfg))
    p = subprocess.Popen([sys.executable, "-c", _DRIVER], stdin=slave, stdout=slave, stderr=slave, env=env,
                         close_fds=True)
    os.close(slave)
    chunks, t0 = [], time.monotonic()
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal (it exited)
                break
            if not data:
                break
            chunks.append(data)
            assert time.monotonic() - t0 < timeout, "the download under a pty did not finish"
    finally:
        os.close(master)
        rc = p.wait(timeout=30)
    return rc, b"".join(chunks).decode("utf-8", "replace")


def test_cli_download_in_a_terminal(tmp_path, server):
    """The README's first command in a terminal: it used to fail on every mirror (pooch's bar needs tqdm).
    The served file is not a checkpoint (its sha256 is right), so the conversion fails at once after the
    download: the successful conversion is test_download_falls_back_to_mirror_and_converts's, and a real
    checkpoint here would cost ~10 s more."""
    base, files = server
    data = bytes(range(256)) * 8192  # 2 MB
    files["pty/latest_net_G.pth"] = data
    cfg = {"sha256": hashlib.sha256(data).hexdigest(),
           "urls": [f"{base}/pty/missing.pth", f"{base}/pty/latest_net_G.pth"],
           "args": ["weights", "download", "--model", "mergenet", "--weights-dir", str(tmp_path)]}
    rc, text = _run_in_pty(cfg)
    assert "tqdm" not in text and "Downloading file" not in text, text  # no pooch error / pooch logger line
    assert f"(mirror 1 of 2): {base}/pty/missing.pth" in text and "failed: HTTPError: 404" in text, text
    assert f"(mirror 2 of 2): {base}/pty/latest_net_G.pth" in text, text
    assert "\x1b[?25l" in text, text  # rich's live bar hid the cursor (transient: erased at the end)
    assert "got latest_net_G.pth: 2.1 MB, sha256 verified" in text, text
    assert "wrong sha256" not in text and "could not download" not in text, text
    # downloaded and verified; then the converter rejects the bytes (exit 1, the reason shown)
    assert rc == 1 and "not a readable PyTorch checkpoint" in text, text


def test_cli_download_without_a_terminal_logs_plain_lines(tmp_path, server, monkeypatch):
    from typer.testing import CliRunner

    import cli

    base, files = server
    files["plain/latest_net_G.pth"] = b"y" * 3_000_000
    monkeypatch.setitem(catalog.MODELS, "mergenet", _entry("mergenet", "0" * 64, [f"{base}/plain/latest_net_G.pth"]))
    r = CliRunner().invoke(cli.app, ["weights", "download", "--model", "mergenet", "--weights-dir", str(tmp_path)])
    assert r.exit_code == 1, r.output
    assert "\x1b[" not in r.output  # no cursor control in a log file
    lines = r.output.splitlines()
    assert f"downloading latest_net_G.pth (one source): {base}/plain/latest_net_G.pth" in lines, lines
    assert any(line.startswith("  3.0 MB in ") and line.endswith(" s") for line in lines), lines  # closing line
    assert any(line.startswith("  failed: wrong sha256") for line in lines), lines


def test_plain_progress_prints_at_most_every_few_seconds():
    now = [0.0]
    lines = []
    p = PlainProgress(lines.append, every=10.0, clock=lambda: now[0])
    p.total = 100_000_000
    for _ in range(100):  # 1 MB every 0.5 s: 50 s in all
        now[0] += 0.5
        p.update(1_000_000)
    p.close()
    p.close()
    assert len(lines) == 6, lines  # at 10, 20, 30, 40, 50 s, then the closing line (once)
    assert lines[0] == "  20.0 MB of 100.0 MB (20%), 2.0 MB/s"
    assert lines[-1] == "  100.0 MB in 50 s"


def test_download_without_torch_stops_before_fetching(tmp_path, server, monkeypatch):
    from typer.testing import CliRunner

    import cli

    base, files = server
    files["notorch.pth"] = b"x" * 1000
    monkeypatch.setitem(catalog.MODELS, "mergenet", _entry("mergenet", "0" * 64, [f"{base}/notorch.pth"]))
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch fails, find_spec says None
    before = len(_Handler.requests)
    r = CliRunner().invoke(cli.app, ["weights", "download", "--model", "mergenet", "--weights-dir", str(tmp_path)])
    assert r.exit_code == 2, r.output
    assert 'pip install -e ".[convert]"' in r.output, r.output  # the markup used to eat "[convert]"
    assert _Handler.requests[before:] == [], "nothing may be downloaded without torch"
    with pytest.raises(Exception, match=r"pip install -e \"\.\[convert\]\""):
        download_and_convert("mergenet", tmp_path)


def test_convert_without_torch_names_the_right_fix(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import cli

    src = tmp_path / "latest_net_G.pth"
    src.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "torch", None)
    r = CliRunner().invoke(cli.app, ["weights", "convert", "--model", "mergenet", "--source", str(src),
                                     "--weights-dir", str(tmp_path / "w")])
    assert r.exit_code == 1
    assert 'pip install -e ".[convert]"' in " ".join(r.output.split()), r.output


def test_cli_download_default_is_what_the_default_run_needs(tmp_path, monkeypatch):
    """No --model: MiDaS and the merge net only (not LeReS's 531 MB); --model leres_res101 gets LeReS."""
    from typer.testing import CliRunner

    import cli
    from hrjax.convert import install

    fetched = []
    monkeypatch.setattr(install, "download_and_convert", lambda name, wd, **kw: fetched.append(name) or wd)
    monkeypatch.setattr("hrjax.convert.checkpoint.torch_available", lambda: True)
    r = CliRunner().invoke(cli.app, ["weights", "download", "--weights-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert fetched == ["midas_v21", "mergenet"]
    fetched.clear()
    r = CliRunner().invoke(cli.app, ["weights", "download", "--model", "leres_res101", "--weights-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert fetched == ["leres_res101"]
