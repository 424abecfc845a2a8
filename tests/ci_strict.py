"""Under CI (``CI=true``) a skipped test is a failure.

A skip is how a test says "I could not check this here" (a missing optional package such as torch or
scikit-image, a missing fixture). Locally that is a convenience; in CI it would let a broken install pass
green, so every skip is turned into a failure that names the reason. Tests deselected by marker (``heavy``)
are not run at all and are not affected. Imported by ``conftest.py``; a module of its own so that
``tests/test_ci_strict.py`` can load the same hook into a throw-away pytest run.
"""

from __future__ import annotations

import os

import pytest


def ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (f"skipped under CI=true, where every test must run: {reason}\n"
                           "(install the test dependencies with: pip install -e \".[dev]\")")
