"""Progress without a terminal (nohup, Slurm, ``| tee``): the plan line and hint before a long image, one line
per stage with elapsed time and ETA, at most one every few seconds, ETAs from measured pass times.
Pure: a fake clock, a fake plan and the progress calls the pipeline makes (hrjax.pipeline.boost), no jax."""

import io
import re
from types import SimpleNamespace

import pytest
from rich.console import Console

from hrjax import progress as pg
from hrjax.run.folder import ImageRecord
from hrjax.run.inputs import Job
from hrjax.run.report import Reporter


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _plan(n=48, R=1344, boost=True, shape=(300, 451, 3), mode="final"):
    return SimpleNamespace(mode=mode, input_shape=shape, R=R, boost=boost, n_patches=n)


def _reporter(total=1, quiet=False):
    buf = io.StringIO()
    clock = Clock()
    rep = Reporter(Console(file=buf, width=80, soft_wrap=True), total=total, quiet=quiet, every=5.0, clock=clock)
    assert not rep.live
    return rep, clock, buf


def _run_image(rep, clock, plan, slowness=2.0, compile_s=30.0, i=0, key="photo"):
    """Drive the reporter like process_image + boost do; every stage takes ``slowness`` x its reference
    cost, and the first chunk of each stage (compilation) ``compile_s`` more."""
    rep.start(i, Job(source=None, key=key))
    rep.stage("search", 0, 1)
    clock.t += 1
    rep.stage("search", 1, 1)
    rep.plan(plan)
    costs = pg.stage_costs(plan)
    for stage, cost in costs.items():
        n = 1 if stage == pg.WHOLE else plan.n_patches
        chunks = [1] if stage == pg.WHOLE else list(range(8, n, 8)) + [n]
        rep.stage(stage, 0, n)
        done = 0
        for k, upto in enumerate(chunks):
            clock.t += slowness * cost * (upto - done) / n + (compile_s if k == 0 else 0)
            done = upto
            rep.stage(stage, done, n)
    rec = ImageRecord(input="x", key=key, status="done", R=plan.R, K=0.5, n_patches=plan.n_patches,
                      input_shape=list(plan.input_shape[:2]), timings={"wall": 1.0})
    rep.finish(rec)
    return costs


def _seconds(text):
    """fmt_seconds back to seconds."""
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(\d+(?:\.\d+)?)(?: s|s)", text)
    h, mi, s = m.groups()
    return int(h or 0) * 3600 + int(mi or 0) * 60 + float(s)


def test_plan_line_and_hint_before_a_long_final_image():
    rep, clock, buf = _reporter()
    _run_image(rep, clock, _plan())
    lines = buf.getvalue().splitlines()
    whole = pg.whole_cost(_plan())
    total = whole + 48 * sum(pg.PATCH_S.values())
    assert lines[0] == (f"[1/1] photo: 451x300, mode final, R=1344, 48 patches: estimated {pg_fmt(total)} "
                        "(rough, from the 2-core CPU figures until measured)")
    assert lines[1] == (f"  to make it shorter: --mode r20 (the whole-image estimate only, about "
                        f"{pg_fmt(whole)}), or --max-res 1344 for fewer patches (below 1344: none)")


def pg_fmt(s):
    from hrjax.run.report import fmt_seconds
    return fmt_seconds(s)


def test_no_plan_line_for_a_quick_image():
    rep, clock, buf = _reporter()
    _run_image(rep, clock, _plan(n=0, R=384, boost=False, shape=(80, 120, 3), mode="r0"), compile_s=0)
    assert "estimated" not in buf.getvalue()
    assert buf.getvalue().splitlines()[-1].startswith("done [1/1] photo: 120x80, R=384")


def test_stage_lines_are_throttled_and_carry_elapsed_and_eta():
    rep, clock, buf = _reporter()
    t0 = clock.t
    _run_image(rep, clock, _plan())
    wall = clock.t - t0
    stage_lines = [line for line in buf.getvalue().splitlines() if " elapsed" in line]
    assert len(stage_lines) >= 5  # every stage shows up in a long run
    assert len(stage_lines) <= wall / 5.0 + 1  # never more than one line per 5 s
    for stage in pg.PATCH_STAGES:
        assert any(f"photo: {stage} " in line for line in stage_lines), (stage, stage_lines)
    for line in stage_lines:
        assert re.search(r", [\dhms. ]+ elapsed(, ETA [\dhms. ]+)?$", line), line


def test_eta_learns_the_measured_speed():
    """Every stage runs at 2x the reference: once the first chunks (compilation) are past, the ETA is the
    remaining reference cost x 2, not x 1 (the prior) or polluted by the compile time."""
    rep, clock, buf = _reporter()
    plan = _plan()
    costs = _run_image(rep, clock, plan, slowness=2.0, compile_s=30.0)
    # the high-pass stage lines after its second chunk: ETA = 2 x what is left of the reference cost
    found = 0
    for line in buf.getvalue().splitlines():
        m = re.search(r"patch high passes (\d+)/48, .* elapsed, ETA (.+)$", line)
        if m and int(m.group(1)) >= 16:
            done = int(m.group(1))
            names = list(costs)
            left = costs["patch high passes"] * (1 - done / 48) + sum(costs[s] for s in
                                                                      names[names.index("patch high passes") + 1:])
            # stages not measured yet use the ratio over the measured ones (2 as well)
            assert _seconds(m.group(2)) == pytest.approx(2 * left, rel=0.02, abs=1), line
            found += 1
    assert found, buf.getvalue()
    # a second image in the same process: its estimate uses the measured ratio
    rep2_lines_before = len(buf.getvalue().splitlines())
    _run_image(rep, clock, plan, slowness=2.0, compile_s=0.0, i=0, key="again")
    new = buf.getvalue().splitlines()[rep2_lines_before:]
    est = _seconds(re.search(r"estimated (.+) \(from this run's pass times\)", new[0]).group(1))
    assert est == pytest.approx(2 * sum(costs.values()), rel=0.02)


def test_run_eta_counts_the_images_left():
    rep, clock, buf = _reporter(total=3)
    _run_image(rep, clock, _plan(n=8), i=0, key="a")
    text = buf.getvalue()
    assert "(run ETA" in text  # three images: the run's ETA beside the image's
    rep.start(1, Job(source=None, key="b"))
    rep.stage("search", 0, 1)
    assert rep._run_eta(10.0) == pytest.approx(10.0 + 1 * 1.0)  # one image left after b, 1 s each (measured)


def test_quiet_prints_no_progress():
    rep, clock, buf = _reporter(quiet=True)
    _run_image(rep, clock, _plan())
    assert buf.getvalue() == ""


def test_terminal_bars_show_the_stage_and_eta():
    """On a terminal (rich forced into terminal mode on a buffer): the run bar and the image bar with its
    stage and ETA are drawn; nothing is printed line by line except the plan, the hint and the results."""
    buf = io.StringIO()
    clock = Clock()
    console = Console(file=buf, width=120, force_terminal=True, color_system=None)
    rep = Reporter(console, total=2, every=5.0, clock=clock)
    assert rep.live
    with rep:
        _run_image(rep, clock, _plan(), i=0, key="a")
        rep.start(1, Job(source=None, key="b"))
        rep.stage("search", 0, 1)
        rep.stage("search", 1, 1)
        rep.plan(_plan())
        rep.stage("whole image", 0, 1)
        rep._progress.refresh()
        text = buf.getvalue()
    assert "[2/2] b: whole image" in text and "ETA" in text, text
    assert "estimated" in text and "done [1/2] a" in text
    assert " elapsed" not in text  # the plain stage lines are for logs only


def test_the_terminal_run_bar_is_not_over_its_estimate_once_the_run_is_done():
    """The run bar's ETA counts down to the end estimated at the last progress call; after the last image nothing
    is left, so the bar (drawn until the run's summary) shows no ETA rather than "over the estimate"."""
    buf = io.StringIO()
    clock = Clock()
    console = Console(file=buf, width=120, force_terminal=True, color_system=None)
    rep = Reporter(console, total=1, every=5.0, clock=clock)
    with rep:
        _run_image(rep, clock, _plan(), slowness=0.5, compile_s=0.0)  # quicker than estimated: an ETA was left
        clock.t += 3600
        rep._progress.refresh()
        text = buf.getvalue()
    assert "done [1/1] photo" in text and "1/1" in text
    assert "over the estimate" not in text, text


def test_a_long_silent_stage_gets_a_heartbeat_line():
    """The whole-image passes make no progress call for minutes: the reporter's ticker (here called by hand,
    the thread calls it every few seconds) prints the stage again after a minute of silence, ETA counted down."""
    rep, clock, buf = _reporter()
    rep.start(0, Job(source=None, key="big"))
    rep.stage("search", 0, 1)
    rep.stage("search", 1, 1)
    rep.plan(_plan())
    rep.stage(pg.WHOLE, 0, 1)
    est = rep.est.remaining(pg.WHOLE, 0, 1)
    rep._tick()
    before = buf.getvalue()
    assert "elapsed" not in before  # 0 s into the image: nothing yet
    clock.t += 30
    rep._tick()
    first = buf.getvalue()[len(before):].strip()
    assert first.startswith("[1/1] big: whole image, 30.0 s elapsed, ETA ")  # announced, a few s in
    assert _seconds(first.rsplit("ETA ", 1)[1]) == pytest.approx(est - 30, abs=1)  # counted down
    clock.t += 45
    rep._tick()
    assert buf.getvalue().strip().endswith(first)  # 45 s later: no new line yet
    clock.t += 20
    rep._tick()
    line = buf.getvalue().strip().splitlines()[-1]
    assert line.startswith("[1/1] big: whole image, 1m35s elapsed, ETA ")  # a minute of silence: again
    assert _seconds(line.rsplit("ETA ", 1)[1]) == pytest.approx(est - 95, abs=1)
    rep.finish(ImageRecord(input="x", key="big", status="failed", error="boom"))
    clock.t += 100
    n = len(buf.getvalue())
    rep._tick()
    assert len(buf.getvalue()) == n  # nothing between images


def test_the_ticker_thread_stops_with_the_reporter():
    rep, clock, buf = _reporter()
    with rep:
        assert rep._ticker is not None and rep._ticker.is_alive()
        ticker = rep._ticker
    assert not ticker.is_alive()


def test_eta_text_says_when_the_estimate_ran_out():
    from hrjax.run.report import eta_text

    assert eta_text(65.0) == "ETA 1m05s"
    assert eta_text(0.0) == eta_text(-30.0) == "over the estimate"  # not "ETA 0.0 s" while still running


def test_a_finished_image_is_not_over_its_estimate():
    """A stage line at the last stage's n/n carries no ETA: nothing is left, however long it took; a stage
    finished earlier still says what the later stages will take."""
    rep, clock, buf = _reporter()
    plan = _plan()
    rep.start(0, Job(source=None, key="photo"))
    rep.plan(plan)
    first, last = pg.PATCH_STAGES[0], pg.PATCH_STAGES[-1]
    for stage in (first, last):
        clock.t += 3600.0  # far over the estimate
        rep.stage(stage, plan.n_patches, plan.n_patches)
    lines = [line for line in buf.getvalue().splitlines() if " elapsed" in line]
    assert len(lines) == 2
    assert re.search(rf"photo: {first} 48/48, 1h00m00s elapsed, ETA [\dhms. ]+$", lines[0]), lines[0]
    assert lines[1].endswith(f"photo: {last} 48/48, 2h00m00s elapsed"), lines[1]
