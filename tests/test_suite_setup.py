"""The test suite's own machinery: pytest-xdist's ``--dist loadgroup`` really keeps an ``xdist_group`` on one
worker (the pipeline invariance tests share one run that way; with pytest 9 and pytest-xdist 3.8 the groups
were silently ignored and that run was made twice, ~100 CPU-s each)."""

import textwrap


def test_an_xdist_group_runs_on_one_worker(pytester):
    pytester.makepyfile(test_grouped=textwrap.dedent("""
        import os
        from pathlib import Path

        import pytest

        GROUP = pytest.mark.xdist_group("shared_run")

        def _record(name):
            Path(name).write_text(os.environ.get("PYTEST_XDIST_WORKER", "none"))

        @GROUP
        def test_a(): _record("a")

        @GROUP
        def test_b(): _record("b")

        @GROUP
        def test_c(): _record("c")

        @pytest.mark.parametrize("i", range(6))
        def test_other(i): pass
    """))
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=9)
    workers = {(pytester.path / n).read_text() for n in "abc"}
    assert len(workers) == 1 and workers != {"none"}, workers
