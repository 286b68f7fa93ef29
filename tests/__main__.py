"""The suite, as CI and the README run it: ``xvfb-run -a python -m tests [pytest options]``.

Three pytest sessions, one after the other:

1. every test not marked ``gui``, spread over workers (pytest-xdist, one file
   per worker so module fixtures are built once). Many load TensorFlow in
   their own process.
2. the ``gui`` tests, with napari viewers under Xvfb and Mesa's default
   driver, and nothing preloaded: the way a user's napari runs. TensorFlow
   never loads in these processes (the plugin runs it in child processes,
   and each GUI test checks it did not), so Mesa's LLVM and TensorFlow's
   never meet. They get workers of their own for the same reason.
3. the ``timing`` tests (the GUI thread's longest stall during a job),
   alone, so they measure the plugin and not a neighbouring test.

The last line sums all three: ``suite: N passed, N failed, N skipped``. Extra
arguments go to every session (e.g. ``-k detect``, ``-x``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = (
    ("core", ["-m", "not gui", "-n", "auto", "--maxprocesses", "4", "--dist", "loadfile"]),
    ("gui", ["-m", "gui and not timing", "-n", "2", "--dist", "loadfile"]),
    # Tests that time the GUI thread run alone: beside another GUI worker on 2 cores they would time the
    # neighbour, not the plugin.
    ("timing", ["-m", "timing", "-n", "0"]),
)


def _counts(report: Path) -> dict[str, int]:
    """passed / failed / skipped from a JUnit XML report (errors count as failed)."""
    if not report.is_file():
        return {"passed": 0, "failed": 0, "skipped": 0}
    total = failed = skipped = 0
    for suite in ET.parse(report).getroot().iter("testsuite"):
        total += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return {"passed": total - failed - skipped, "failed": failed, "skipped": skipped}


def _slowest(report: Path, count: int = 6) -> list[tuple[float, str]]:
    """The ``count`` slowest files and tests of a JUnit XML report, so a growing suite shows where its time
    goes (files matter: each runs whole on one worker)."""
    if not report.is_file():
        return []
    cases = [(float(case.get("time", 0)), case.get("classname") or "", case.get("name") or "")
             for case in ET.parse(report).getroot().iter("testcase")]
    files: dict[str, float] = {}
    for seconds, module, _ in cases:
        files[module] = files.get(module, 0.0) + seconds
    return (sorted(((s, f"{m} (file)") for m, s in files.items()), reverse=True)[:count]
            + sorted(((s, f"{m}::{n}") for s, m, n in cases), reverse=True)[:count])


def main(extra: list[str]) -> int:
    start = time.monotonic()
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    worst = 0
    with tempfile.TemporaryDirectory() as tmp:
        # Fixtures built once (a trained synthetic model) are shared by every session's workers.
        env = {**os.environ, "LYMPHMET_TEST_SHARED": str(Path(tmp) / "shared")}
        for name, options in SESSIONS:
            report = Path(tmp) / f"{name}.xml"
            print(f"\n===== {name} tests =====", flush=True)
            code = subprocess.call([sys.executable, "-m", "pytest", *options, f"--junitxml={report}", *extra],
                                   cwd=ROOT, env=env)
            if code == 5:  # no test selected in this session (a -k that matches only the other): not a failure
                code = 0
            worst = max(worst, code)
            for key, value in _counts(report).items():
                totals[key] += value
            for seconds, test in _slowest(report):
                print(f"  {seconds:6.1f} s  {test}")
    minutes = (time.monotonic() - start) / 60
    print(f"\nthe sessions took {minutes:.1f} min")
    print(f"suite: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
