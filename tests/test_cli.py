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


@pytest.mark.tf
@pytest.mark.parametrize("command", ["score", "predict"])
def test_bad_model_prints_exactly_one_stderr_line_and_no_tensorflow_chatter(tmp_path, small_synthetic, command):
    """TensorFlow loads (the file must be opened to be judged) yet says nothing: only the ``error:`` line."""
    from .conftest import write_patch_folder

    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"this is not a zip archive")
    if command == "score":
        args = ["score", str(bad), str(write_patch_folder(tmp_path / "patches", lambda _label: ["a_0_0.png"]))]
    else:
        args = ["predict", str(small_synthetic), "-o", str(tmp_path / "out"), "--model", str(bad)]
    result = run_cli(*args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"error: {bad}: not a Keras model (.keras files are zip archives)"]
    if command == "score":  # --debug holds nothing back: the traceback, and TensorFlow's start-up lines
        debug = run_cli("--debug", *args)
        assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_progress_lines_end_with_a_newline_off_a_terminal(tmp_path):
    """stderr to a pipe (CI logs): whole progress lines, no carriage-return redraws."""
    result = run_cli("synth", "-o", str(tmp_path / "s.tif"), "--size", "2048")
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("synth:")]
    assert progress and progress[-1].startswith("synth: ") and "(100%" in progress[-1]
    assert "\r" not in result.stderr
