"""bench/side_by_side.py and bench/reference_stages.py (hrjax next to the official reference): the parts that
run without the reference checkout. The stage attribution is checked on a stand-in with the reference's call
structure (one whole-image double estimate, then per patch a double estimate and a merge with the base)."""

import sys

import pytest

from conftest import ROOT, load_bench


@pytest.fixture(scope="module")
def reference_stages():
    return load_bench("reference_stages")


@pytest.fixture(scope="module")
def side_by_side():
    sys.path.insert(0, str(ROOT / "bench"))
    return load_bench("side_by_side")


class _FakeMerge:
    log = []

    def test(self):
        _FakeMerge.log.append("merge")


class _FakeRun:
    """The call structure of run.py's run(): doubleestimate -> singleestimate x2 + merge, per patch one more
    merge with the base outside doubleestimate."""

    def __init__(self):
        self.net = _FakeMerge()

    def singleestimate(self, img, msize, net_type):
        return msize

    def doubleestimate(self, img, size1, size2, pix2pixsize, net_type):
        # self.singleestimate: the wrapped one once wrap() set it, as run.py's module global is
        a, b = self.singleestimate(img, size1, net_type), self.singleestimate(img, size2, net_type)
        self.net.test()
        return a, b

    def run(self, patches):
        self.doubleestimate(None, 384, 1344, 1024, 0)          # the whole image
        for _ in range(patches):
            self.doubleestimate(None, 384, 768, 1024, 0)
            self.net.test()                                    # the merge with the base


def test_stage_clock_attributes_calls_like_the_reference_stages(reference_stages):
    fake = _FakeRun()
    clock = reference_stages.StageClock(receptive_field=384)
    clock.wrap(fake, _FakeMerge)
    fake.run(patches=3)
    assert clock.calls == {"whole": 1, "patch_low_passes": 3, "patch_high_passes": 3, "merges": 6}
    assert set(clock.seconds) == set(clock.calls) and all(v >= 0 for v in clock.seconds.values())


def test_run_measured_reports_the_childs_own_peak_memory(side_by_side):
    big = [sys.executable, "-c", "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"]
    small = [sys.executable, "-c", "pass"]
    _, rss_big, wall = side_by_side.run_measured(big)
    _, rss_small, _ = side_by_side.run_measured(small)   # a fresh wrapper: not the maximum of both
    assert rss_big > 0.28 and rss_small < 0.2 and wall > 0
    with pytest.raises(SystemExit, match="failed"):
        side_by_side.run_measured([sys.executable, "-c", "raise SystemExit(3)"])


def test_table_gives_ratios_to_the_reference(side_by_side):
    runs = {"hrjax warm": {"process_s": 90.0, "whole": 5.0, "peak_rss_gb": 1.5},
            "reference": {"process_s": 100.0, "whole": 4.0, "peak_rss_gb": 2.0}}
    text = "\n".join(side_by_side.table(runs))
    assert "| whole process | 90.0 s (0.90x) | 100.0 s |" in text
    assert "| whole image (2 passes + 1 merge) | 5.0 s (1.25x) | 4.0 s |" in text
    assert "| peak RSS (GB) | 1.50 (0.75x) | 2.00 |" in text
    assert "| patch low passes | - | - |" in text


def test_repeats_give_medians_and_each_runs_own_ratio(side_by_side):
    warm = [{"process_s": s, "whole": w, "n_patches": 18, "png": f"w{i}.png"}
            for i, (s, w) in enumerate([(130.0, 9.0), (140.0, 9.5), (120.0, 8.0)])]
    ref = [{"process_s": s, "png": f"r{i}.png"} for i, s in enumerate([150.0, 160.0, 140.0])]
    med = side_by_side.median_run(warm)
    assert med["process_s"] == 130.0 and med["whole"] == 9.0
    assert med["n_patches"] == 18 and isinstance(med["n_patches"], int)   # a count stays a count in the JSON
    assert med["png"] == "w0.png"   # non-numbers come from the first run
    lines = side_by_side.repeat_lines({"hrjax warm": warm, "reference": ref})
    assert lines == ["run 1: reference 150.0 s, hrjax warm 130.0 s (0.87x)",
                     "run 2: reference 160.0 s, hrjax warm 140.0 s (0.88x)",
                     "run 3: reference 140.0 s, hrjax warm 120.0 s (0.86x)"]
    assert side_by_side.repeat_lines({"hrjax warm": warm[:1], "reference": ref[:1]}) == []  # one run: the table
