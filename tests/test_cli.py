"""The ``lymphmet`` CLI contract: JSON last line on stdout, exit 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from napari_lymphmet.cli import main

from .conftest import BAD_INPUTS, make_bad_input, real_slide


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "napari_lymphmet.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_info_prints_one_json_summary_last():
    path = real_slide("CMU-1-Small-Region.svs")
    result = run_cli("info", str(path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["dimensions"] == [2220, 2967]
    assert summary["mpp"] == [0.499, 0.499]
    assert summary["vendor"] == "aperio"
    assert summary["level_count"] == 1
    assert summary["level_dimensions"] == [[2220, 2967]]
    assert summary["level_downsamples"] == [1.0]
    assert summary["objective_power"] == 20
    assert set(summary["associated_images"]) == {"label", "macro", "thumbnail"}
    assert summary["path"] == str(path)


def test_info_without_mpp_gives_null(capsys):
    assert main(["info", str(real_slide("tcga-cr-7395-01a-01-ts1.svs"))]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["mpp"] is None and summary["level_count"] == 2


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_exits_2_with_one_line(tmp_path, small_synthetic, case):
    path = make_bad_input(tmp_path, case, small_synthetic)
    result = run_cli("info", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ")
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("--debug", "info", str(tmp_path / "nope.svs"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_bad_option_exits_2():
    result = run_cli("info", "--no-such-option", "x.svs")
    assert result.returncode == 2 and "Traceback" not in result.stderr
