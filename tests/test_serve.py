"""``hrjax serve``: the server on 127.0.0.1 (a free port) with the synthetic weights. A golden image boosted
through the API gives byte-identical files to ``hrjax boost`` with the same options; a non-image, an image
whose header declares too many pixels and a body over the upload limit are refused with a reason while the
server keeps serving. The browser test (heavy, needs Chromium) does the same through the page."""

import json
import shutil
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import cli
from hrjax.serve.cli import is_loopback, offered_models
from hrjax.serve.config import JobOptions, ServeConfig, job_options
from hrjax.serve.http import make_server
from hrjax.serve.jobs import safe_stem

UPLOAD_LIMIT = 1 << 20   # small, so that the over-limit body is cheap to send
OPTIONS = {"model": "midas_v21", "mode": "r0", "precision": "float32", "max_res": ""}  # r0: seconds, not minutes
FILES = {"png16": ".png", "npy": ".npy", "ply": ".ply", "plain": "_plain.png"}


def png_declaring(w: int, h: int) -> bytes:
    """A tiny PNG whose header declares w x h pixels (its data is one row: the header check must refuse it)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0\0")) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def server(small_weights_dir, tmp_path_factory):
    # the small merge net (conftest): what is tested is that serve gives the CLI's files, not their values
    config = ServeConfig(weights_dir=small_weights_dir, port=0, models=offered_models(small_weights_dir, None),
                         max_upload_bytes=UPLOAD_LIMIT, work_dir=tmp_path_factory.mktemp("serve"),
                         grouped_impl="auto")  # as the CLI it is compared with
    srv = make_server(config)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    host, port = srv.server_address[:2]
    yield f"http://{host}:{port}"
    srv.shutdown()
    srv.server_close()


def request(url: str, data: bytes | None = None, method: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def upload(base: str, name: str, data: bytes, **options) -> tuple[int, dict]:
    q = urllib.parse.urlencode({"name": name, **OPTIONS, **options})
    status, body = request(f"{base}/api/jobs?{q}", data, "POST")
    return status, json.loads(body)


def wait_done(base: str, job_id: str, timeout: float = 900) -> tuple[dict, list[dict]]:
    seen, t0 = [], time.monotonic()
    while time.monotonic() - t0 < timeout:
        s = json.loads(request(f"{base}/api/jobs/{job_id}")[1])
        seen.append(s)
        if s["status"] in ("done", "failed"):
            return s, seen
        time.sleep(0.2)
    raise AssertionError(f"job not finished after {timeout} s: {seen[-1]}")


def cli_outputs(image: Path, out: Path, weights_dir: Path) -> dict[str, bytes]:
    """What ``hrjax boost`` writes for the page's options (the page always writes png16, npy, ply, plain)."""
    r = CliRunner().invoke(cli.app, ["boost", str(image), "--output", str(out), "--mode", "r0",
                                     "--weights-dir", str(weights_dir), "--save", "png16,npy,ply,plain", "-q"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return {k: (out / (image.stem + s)).read_bytes() for k, s in FILES.items()}


def test_options_and_names():
    config = ServeConfig(weights_dir=Path("."), models=("midas_v21",))
    assert job_options({}, config) == JobOptions("midas_v21", "final", None, "float32")
    assert job_options({"mode": "r20", "max_res": "1500"}, config).max_res == 1500.0
    for bad in ({"model": "leres_res101"}, {"mode": "fast"}, {"precision": "fp8"}, {"max_res": "-1"},
                {"max_res": "big"}):
        with pytest.raises(ValueError):
            job_options(bad, config)
    assert safe_stem("../../etc/pa ss wd.tar.png") == "pa_ss_wd.tar" and safe_stem("..") == "image"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")


def test_serve_command_offers_and_checks_its_choices_like_boost(tmp_path):
    from hrjax.models.precision import GROUPED_IMPLS

    help_text = " ".join(CliRunner().invoke(cli.app, ["serve", "--help"], env={"COLUMNS": "200"}).output.split())
    assert "|".join(GROUPED_IMPLS) in help_text   # "packed" too (the help once said auto, native or split)
    assert "cpu|gpu|tpu" in help_text
    for option, bad in (("--grouped-conv", "fast"), ("--device", "quantum")):
        r = CliRunner().invoke(cli.app, ["serve", option, bad, "--weights-dir", str(tmp_path)])
        assert r.exit_code == 2 and f"Invalid value for '{option}'" in " ".join(r.output.split()), r.output


def test_serve_boosts_like_the_cli_and_refuses_bad_uploads(server, golden, small_weights_dir, tmp_path):
    status, body = request(f"{server}/")
    assert status == 200 and b"<title>hrjax" in body
    opts = json.loads(request(f"{server}/api/options")[1])
    assert [m["name"] for m in opts["models"]] == ["midas_v21"] and opts["max_upload_bytes"] == UPLOAD_LIMIT
    assert len(opts["colormaps"]["inferno"]) == 256

    # refused at once, with the reason; nothing queued
    status, r = upload(server, "notes.png", b"this is not an image\n")
    assert status == 400 and "not a readable image" in r["error"] and "notes.png" in r["error"], r
    status, r = upload(server, "huge.png", png_declaring(100_000, 100_000))
    assert status == 413 and "100000x100000" in r["error"] and "from its header" in r["error"], r
    status, r = upload(server, "big.png", b"\0" * (UPLOAD_LIMIT + 1))
    assert status == 413 and "over the limit" in r["error"], r
    status, r = upload(server, "x.png", b"", mode="fast")
    assert status == 400 and "mode" in r["error"]
    assert json.loads(request(f"{server}/api/jobs")[1]) == []

    image = golden / "images" / "synthetic_480.png"
    status, r = upload(server, image.name, image.read_bytes())
    assert status == 202, r
    final, seen = wait_done(server, r["id"])
    assert final["status"] == "done", final.get("error")
    assert final["R"] == 384 and final["n_patches"] == 0 and final["input_shape"] == [360, 480]
    assert any(s["status"] == "running" and s["stage"] for s in seen)  # progress was reported

    cli_files = cli_outputs(image, tmp_path / "cli", small_weights_dir)
    for kind in FILES:
        status, data = request(f"{server}/api/jobs/{r['id']}/{kind}")
        assert status == 200 and data == cli_files[kind], kind  # byte-identical to hrjax boost's file
    req = urllib.request.Request(f"{server}/api/jobs/{r['id']}/png16?download=1")
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.headers["Content-Disposition"] == 'attachment; filename="synthetic_480.png"'
    preview = cv2.imdecode(np.frombuffer(request(f"{server}/api/jobs/{r['id']}/input")[1], np.uint8),
                           cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(preview, cv2.imread(str(image)))  # the decoded input, 8-bit

    # still serving after the refusals and the job; unknown things are 404s
    assert request(f"{server}/api/options")[0] == 200
    assert request(f"{server}/api/jobs/0123456789abcdef")[0] == 404
    assert request(f"{server}/api/jobs/{r['id']}/source")[0] == 404  # the stored upload is not served back
    assert request(f"{server}/../etc/passwd")[0] == 404


# --------------------------------------------------------------------------------------------------------
# the page in a browser (heavy: needs Chromium, `apt-get install chromium`, and `pip install -e ".[browser]"`)

def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.heavy
def test_page_in_a_browser(server, golden, small_weights_dir, tmp_path):
    exe = chromium()
    if exe is None:
        pytest.skip("no Chromium (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason='pip install -e ".[browser]"')
    image = golden / "images" / "synthetic_480.png"
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image\n")
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_declaring(100_000, 100_000))
    cli_files = cli_outputs(image, tmp_path / "cli", small_weights_dir)

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 820})
        page.goto(server + "/")
        page.wait_for_selector("#model option", state="attached")
        page.select_option("#mode", "r0")
        page.select_option("#colormap", "gray")
        # refusals first: each shows its reason in its card
        for f, reason in ((bad, "not a readable image"), (huge, "100000x100000")):
            page.set_input_files("#files", str(f))
            page.click("#go")
            page.wait_for_selector(f".job.failed:has-text('{reason}')", timeout=30_000)
        page.set_input_files("#files", str(image))
        page.click("#go")
        page.wait_for_selector(".job[data-shown='1']", timeout=900_000)
        card = page.locator(".job[data-shown='1']")
        assert "done" in card.locator(".status").inner_text()
        # the shown depth image is the served 16-bit PNG, byte for byte hrjax boost's
        shown = page.evaluate("""async () => {
            const src = document.querySelector('.job[data-shown="1"] .depth-src').src;
            const b = new Uint8Array(await (await fetch(src)).arrayBuffer());
            let s = ''; for (const x of b) s += String.fromCharCode(x); return btoa(s); }""")
        import base64
        assert base64.b64decode(shown) == cli_files["png16"]
        # ... and what the canvas shows in gray is its 8-bit view (the browser's 16 -> 8 bit conversion)
        gray = np.array(page.evaluate("""() => {
            const c = document.querySelector('.job[data-shown="1"] .pair canvas.boosted-view');
            return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }"""), np.int64)
        d16 = cv2.imdecode(np.frombuffer(cli_files["png16"], np.uint8), cv2.IMREAD_UNCHANGED).astype(np.int64)
        assert np.abs(gray.reshape(d16.shape + (4,))[..., 0] - d16 / 257.0).max() <= 1
        with page.expect_download() as dl:
            card.locator(".dl-png16").click()
        assert Path(dl.value.path()).read_bytes() == cli_files["png16"]
        assert dl.value.suggested_filename == "synthetic_480.png"
        page.select_option("#colormap", "inferno")
        page.locator(".slider").fill("35")
        page.screenshot(path="/tmp/hrjax_serve.png", full_page=True)
        browser.close()
    assert request(f"{server}/api/options")[0] == 200  # still serving
