"""Human progress of a folder run on a rich console: bars on a terminal, plain timed lines in a log."""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hrjax.run.folder import ImageRecord
    from hrjax.run.inputs import Job

def fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m{s:02d}s"


def eta_text(left: float) -> str:
    """``ETA 1m05s``; once the estimate has run out (compilation, a busy machine) it says so instead of 0 s."""
    return f"ETA {fmt_seconds(left)}" if left > 0.5 else "over the estimate"


class Reporter:
    """Human progress on a rich console (stderr); ``quiet`` keeps only the failures.

    On a terminal: a live bar for the run (images, ETA) and one for the running image (its stage, elapsed
    time, ETA). Without one (nohup, Slurm, ``| tee``): plain lines, one per stage with the elapsed time and the
    ETA, at most one every ``every`` seconds, and one per finished image. In both, before an image estimated
    at :data:`hrjax.progress.LONG_S` or more, one line with its plan and estimate, and for a long Final run
    the options that shorten it. ETAs come from :class:`hrjax.progress.Estimator` (the plan's pass counts
    times the pass times measured in this process)."""

    def __init__(self, console, total: int, quiet: bool = False, every: float = 5.0, clock=time.monotonic):
        from hrjax.progress import Estimator

        self.console, self.total, self.quiet = console, total, quiet
        self.live = console.is_terminal and not quiet
        self.every, self.clock = every, clock
        self.est = Estimator(clock=clock)
        self._progress = None
        self._task = self._image_task = None
        self._label = self._plain_label = ""
        self._i = 0
        self._walls: list[float] = []       # wall times of the images done in this run
        self._image_t0 = clock()
        self._estimate = math.nan           # seconds, the current image, at its start
        self._last_line, self._last_stage = -math.inf, None
        self._current = None                # (stage, done, total, seconds left, time) of the last call
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = None

    def __enter__(self):
        if not self.live and not self.quiet:
            # a stage can run for minutes between two progress calls (the whole-image passes make none):
            # a heartbeat line then, so a log never falls silent (see _tick)
            self._ticker = threading.Thread(target=self._beat, name="hrjax-progress", daemon=True)
            self._ticker.start()
        if self.live:
            from rich.progress import (BarColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn,
                                       TimeElapsedColumn)
            from rich.text import Text
            clock = self.clock

            class Eta(ProgressColumn):
                """Counts down between progress calls (a stage can run for minutes without one)."""

                def render(self, task):
                    end = task.fields.get("end")
                    return Text("" if end is None else eta_text(end - clock()))

            # "count" is the run bar's images done; the image bar counts in estimated seconds, not shown
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.fields[count]}"), TimeElapsedColumn(), Eta(),
                                      console=self.console, transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task("images", total=self.total, end=None, count=f"0/{self.total}")
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            self._tick()

    def _tick(self) -> None:
        """Without a terminal, between progress calls: the current stage's line once it has run a few seconds
        unannounced, and again after each minute of silence."""
        with self._lock:
            if self._current is None:
                return
            stage, done, total, left, t = self._current
            now = self.clock()
            since = now - self._last_line
            if now - self._image_t0 >= self.every and (since >= 12 * self.every or
                                                        (stage != self._last_stage and since >= self.every)):
                self._line(stage, done, total, left - (now - t), now)  # the rule of stage(), between calls

    def _line(self, stage: str, done: int, total: int, left: float, now: float) -> None:
        self._last_line, self._last_stage = now, stage
        what = f"{stage} {done}/{total}" if total > 1 else stage
        # the image's last priced stage complete: nothing is left, so no ETA (not "over the estimate")
        finished = done >= total and stage == next(reversed(self.est.costs), None)
        eta = f", {eta_text(left)}" if math.isfinite(left) and not finished else ""
        run = self._run_eta(max(left, 0.0)) if self.total > 1 else math.nan
        run_eta = f" (run {eta_text(run)})" if math.isfinite(run) else ""
        self.message(f"{self._plain_label}: {what}, {fmt_seconds(now - self._image_t0)} elapsed{eta}{run_eta}")

    def __exit__(self, *exc):
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False, soft_wrap=True, markup=False)

    def start(self, i: int, job: Job) -> None:
        from rich.markup import escape
        self._i = i
        self._plain_label = f"[{i + 1}/{self.total}] {job.key}"
        self._label = escape(self._plain_label)
        self._image_t0 = self.clock()
        self._estimate = math.nan
        self._last_stage = None
        self.est.costs = {}  # unknown until this image's plan
        if self._progress is not None:
            self._progress.update(self._task, end=None)
            if self._image_task is not None:
                self._progress.remove_task(self._image_task)
            self._image_task = self._progress.add_task(f"{self._label}: reading", total=None, end=None, count="")

    def plan(self, plan) -> None:
        """The image's plan is made (before any network pass): estimate it, and say so when it is long."""
        from hrjax import progress as pg
        self.est.start_image(plan)
        self._estimate = self.est.image_estimate()
        if self._estimate >= pg.LONG_S and not self.quiet:
            self.message(f"{self._plain_label}: " + pg.plan_line(plan, self._estimate, self.est.measured,
                                                                 fmt_seconds))
            if self._estimate >= pg.HINT_S:
                hint = pg.hint_line(plan, self.est.seconds(pg.WHOLE, self.est.costs[pg.WHOLE]), fmt_seconds)
                if hint:
                    self.message(hint)

    def _run_eta(self, image_left: float) -> float:
        """Seconds left in the run: this image's rest, then the images after it at the mean measured wall
        time of this run's images (this image's estimate before any is done)."""
        after = self.total - self._i - 1
        per_image = (sum(self._walls) / len(self._walls)) if self._walls else self._estimate
        if after == 0:
            return image_left
        return image_left + after * per_image

    def stage(self, stage: str, done: int, total: int) -> None:
        self.est.observe(stage, done, total)
        left = self.est.remaining(stage, done, total)
        elapsed = self.clock() - self._image_t0
        what = f"{stage} {done}/{total}" if total > 1 else stage
        if self._progress is not None:
            costs = self.est.costs
            total_ref = sum(costs.values()) if costs else None
            done_ref = None
            if total_ref and stage in costs:
                names = list(costs)
                done_ref = sum(costs[s] for s in names[:names.index(stage)]) + costs[stage] * done / max(total, 1)
            self._progress.update(self._image_task, description=f"{self._label}: {what}", total=total_ref,
                                  completed=done_ref or 0, end=self.clock() + left if math.isfinite(left) else None)
            run = self._run_eta(left)
            self._progress.update(self._task, end=self.clock() + run if math.isfinite(run) else None)
            return
        if self.quiet:
            return
        with self._lock:
            now = self.clock()
            self._current = (stage, done, total, left, now)
            if now - self._last_line < self.every or elapsed < self.every:
                return  # at most one line every few seconds in a log, none for a quick image
            if stage == self._last_stage and now - self._last_line < 12 * self.every:
                return  # a long stage: a reminder now and then, not a line per chunk
            self._line(stage, done, total, left, now)

    def finish(self, rec: ImageRecord) -> None:
        with self._lock:
            self._current = None
        if rec.status == "done":
            self._walls.append(rec.timings.get("wall", 0.0))
        if rec.status == "failed":
            from rich.markup import escape
            self.console.print(f"[red]failed[/] {self._label}: {escape(rec.error or '')}", highlight=False,
                               soft_wrap=True)
        elif not self.quiet:
            if rec.status == "skipped":
                self.console.print(f"[dim]skipped[/] {self._label} (outputs exist; --overwrite to redo)",
                                   highlight=False, soft_wrap=True)
            else:
                shape = "x".join(str(s) for s in (rec.input_shape or [])[::-1])
                self.console.print(f"[green]done[/] {self._label}: {shape}, R={rec.R}, K={rec.K:.3f}, "
                                   f"{rec.n_patches} patches, {fmt_seconds(rec.timings.get('wall', 0.0))}",
                                   highlight=False, soft_wrap=True)
        if self._progress is not None:
            # the run's end was estimated during this image; the next image's stages estimate it again, and after
            # the last one nothing is left (no ETA, not "over the estimate")
            self._progress.advance(self._task)
            self._progress.update(self._task, count=f"{self._i + 1}/{self.total}", end=None)
            if self._image_task is not None:
                self._progress.remove_task(self._image_task)
                self._image_task = None
