"""What a new user reads: usage errors before anything loads, text that rich markup cannot eat, tables and
messages that survive a log file (80 columns, no terminal), --version, the help without ``<bool>``.

All in process (typer's CliRunner: stdout/stderr are not terminals, rich's width is 80) and without jax work.
"""

import io

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import cli


def invoke(args):
    return CliRunner().invoke(cli.app, [str(a) for a in args], catch_exceptions=False)


def test_missing_input_is_a_usage_error_before_the_weights(tmp_path):
    """A mistyped path: exit 2 naming it, checked before the weights (the folder here has none, and that
    error must not be the one shown) and before any output is made."""
    empty = tmp_path / "no-weights"
    empty.mkdir()
    typo = tmp_path / "phtos" / "cat.jpg"
    r = invoke(["boost", typo, "--output", tmp_path / "out", "--weights-dir", empty])
    assert r.exit_code == 2, r.output
    assert f"no such file or folder: {typo}" in r.output
    assert "missing model weights" not in r.output
    assert not (tmp_path / "out").exists()


def test_markup_in_user_text_is_printed_verbatim(tmp_path):
    """Paths and names go through rich: "[bold]" in them must be printed, not taken as markup."""
    odd = tmp_path / "[bold]x[/bold]" / "a.png"
    r = invoke(["boost", odd, "--output", tmp_path / "out"])
    assert r.exit_code == 2 and str(odd) in r.output, r.output
    r = invoke(["weights", "download", "--model", "[red]nope"])
    assert r.exit_code == 2 and "unknown model '[red]nope'" in r.output, r.output


def test_long_messages_are_not_split_without_a_terminal(tmp_path):
    """Without a terminal rich used to wrap at 80 columns, splitting paths and commands in two."""
    deep = tmp_path / ("a_rather_long_folder_name_" * 4) / "photo.jpg"
    r = invoke(["boost", deep, "--output", tmp_path / "out"])
    assert r.exit_code == 2
    assert str(deep) in r.output.splitlines()[0], r.output  # on one line, whole


def test_version_and_info_show_hrjax_version(tmp_path):
    from hrjax import __version__

    r = invoke(["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"hrjax {__version__}"
    r = invoke(["info", "--weights-dir", tmp_path])
    assert r.exit_code == 0 and f"hrjax {__version__}" in r.output, r.output


def test_help_shows_no_bool_beside_flags():
    r = invoke(["boost", "--help"])
    assert r.exit_code == 0
    assert "--overwrite" in r.output and "--recursive" in r.output
    assert "<bool>" not in r.output
    assert "<path>" in r.output  # the type of options that take a value is still shown


def test_tables_are_not_cut_without_a_terminal():
    """A table wider than 80 columns printed to a file: every number and hash whole (rich shrank the
    columns to 80 and cut them: ``0.17…``)."""
    from rich.console import Console
    from rich.table import Table

    from hrjax.console import print_table

    buf = io.StringIO()
    console = Console(file=buf, width=80, soft_wrap=True)
    assert not console.is_terminal
    table = Table(title="wide")
    for c in ["image", *(f"metric {i}" for i in range(9)), "sha256"]:
        table.add_column(c)
    sha = "50ec735d74ed6499562d898f41b49343e521808b8dae589aa3c2f5c9ac9f7462"
    table.add_row("a_long_image_name_01", *(f"0.{i}234" for i in range(9)), sha)
    print_table(console, table)
    text = buf.getvalue()
    assert "…" not in text and sha in text and "a_long_image_name_01" in text, text
    assert all(f"0.{i}234" in text for i in range(9)), text


def _picture(h, w, seed):
    rng = np.random.default_rng(seed)
    return (rng.random((h, w)) * np.linspace(0.2, 1, w)[None]).astype(np.float32)


def test_evaluate_accepts_a_folder_written_by_boost(tmp_path):
    """`hrjax boost --save png16,npy,color` writes <stem>.png, <stem>.npy and <stem>_color.png; evaluate
    used to refuse such a folder as GT ("two GT files with the stem"). Written with hrjax's own writers."""
    pytest.importorskip("skimage")
    from hrjax import io as hio

    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for i in range(2):
        d = _picture(48, 64, i) + 0.1
        hio.write_png16(gt / f"img{i}.png", d)
        hio.write_npy(gt / f"img{i}.npy", d)
        hio.write_color(gt / f"img{i}_color.png", d)
        hio.write_png16(pred / f"img{i}.png", d + 0.05 * _picture(48, 64, 10 + i))
    r = invoke(["evaluate", "--gt", gt, "--pred", pred])
    assert r.exit_code == 0, r.output
    assert "img0" in r.output and "img1" in r.output and "mean (2)" in r.output
    assert "img0_color" not in r.output  # the preview is not a GT map
    assert "…" not in r.output, r.output  # 10 columns at 80: no cut numbers
    r = invoke(["evaluate", "--gt", gt, "--pred", pred, "--gt-format", "png"])
    assert r.exit_code == 0 and "mean (2)" in r.output, r.output


def test_picture_helper_writes_readable_pngs(tmp_path):
    # guards the test above: the writers produce files cv2 reads back as 16-bit
    from hrjax import io as hio

    hio.write_png16(tmp_path / "x.png", _picture(8, 8, 0))
    assert cv2.imread(str(tmp_path / "x.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16


def test_tables_on_a_narrow_terminal_fold_text_and_keep_numbers():
    """On a terminal the table fits the width: a hash folds onto two lines, numbers stay whole."""
    from rich.console import Console
    from rich.table import Table

    from hrjax.console import print_table

    buf = io.StringIO()
    console = Console(file=buf, width=60, force_terminal=True, color_system=None)
    table = Table()
    for c in ("model", "sha256", "tensors"):
        table.add_column(c)
    sha = "50ec735d74ed6499562d898f41b49343e521808b8dae589aa3c2f5c9ac9f7462"
    table.add_row("mergenet", sha, "12345")
    print_table(console, table)
    lines = buf.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 60, lines
    assert "12345" in buf.getvalue() and "…" not in buf.getvalue()
    cells = [line.split("│")[2].strip() for line in lines if line.count("│") == 4]  # the sha256 column
    assert "".join(cells) == sha, cells  # folded onto lines, whole
