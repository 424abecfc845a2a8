"""Downloads against a local HTTP server on 127.0.0.1 (started by the tests, bounded, stops by itself)."""

import dataclasses
import hashlib
import http.server
import threading

import pytest

from hrjax.weights import catalog, store
from hrjax.weights.download import DownloadError, download_and_convert, fetch


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        name = self.path.lstrip("/")
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
    assert any("/gone/" in m for m in logs) and logs[-2].endswith(f"{base}/latest_net_G.pth")
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
