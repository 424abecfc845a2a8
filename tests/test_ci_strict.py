"""The CI rule of ``tests/ci_strict.py``: under CI=true a skip (e.g. torch missing) fails the run."""

import pytest

SKIPPING = """
import pytest

def test_needs_a_missing_package():
    pytest.importorskip("hrjax_no_such_package")

def test_plain():
    assert True
"""


@pytest.fixture
def run_skipping(pytester):
    pytester.makeconftest("from ci_strict import pytest_runtest_makereport  # noqa: F401")
    pytester.makepyfile(test_skipping=SKIPPING)
    return lambda: pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:hypothesispytest")


def test_a_skip_fails_under_ci(run_skipping, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = run_skipping()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*skipped under CI=true*hrjax_no_such_package*"])
    assert result.ret != 0


def test_a_skip_is_a_skip_elsewhere(run_skipping, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    result = run_skipping()
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == 0
