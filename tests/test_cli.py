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


@pytest.mark.parametrize("args", [
    ("mask", "{slide}", "-o", "{tmp}/m.png", "--mpp", "nan"),
    ("mask", "{slide}", "-o", "{tmp}/m.png", "--mpp", "inf"),
    ("mask", "{slide}", "-o", "{tmp}/m.png", "--downsample", "0"),
    ("patches", "{slide}", "-o", "{tmp}/p", "--max-per-class", "-1"),
    ("patches", "{slide}", "-o", "{tmp}/p", "--workers", "-1"),
    ("patches", "{slide}", "-o", "{tmp}/p", "--mpp", "-0.5"),
    ("predict", "{slide}", "-o", "{tmp}/o", "--batch-size", "0"),
    ("predict", "{slide}", "-o", "{tmp}/o", "--batch-size", "-5"),
    ("predict", "{slide}", "-o", "{tmp}/o", "--stride", "-1"),
    ("predict", "{slide}", "-o", "{tmp}/o", "--threshold", "nan"),
    ("predict", "{slide}", "-o", "{tmp}/o", "--workers", "0"),
    ("predict", "{slide}", "-o", "{tmp}/o", "--node-gate", "1.5"),
    ("train", "{tmp}", "-o", "{tmp}/m.keras", "--learning-rate", "0"),
    ("train", "{tmp}", "-o", "{tmp}/m.keras", "--ema", "1"),
])
def test_bad_numbers_are_refused_in_one_line_before_anything_runs(tmp_path, small_synthetic, args):
    result = run_cli(*[a.format(slide=small_synthetic, tmp=tmp_path) for a in args])
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: lymphmet {args[0]}: argument {args[-2]}"), lines
    assert not list(tmp_path.iterdir())  # nothing written


def test_an_unexpected_error_is_one_line_exit_1_and_debug_shows_the_traceback(monkeypatch, capsys):
    def broken(_args):  # a bug in a command, as a user would meet it
        return 1 / 0

    monkeypatch.setattr("napari_lymphmet.cli.parser._info", broken)
    assert main(["info", "x.svs"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: lymphmet info: unexpected ZeroDivisionError"), err
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "info", "x.svs"])


def _synthetic_slide(path, size: int = 6000):
    from napari_lymphmet.synthetic import SynthSpec, write_synthetic_slide

    write_synthetic_slide(path, SynthSpec(width=size, height=size, seed=3, lesions=1, mpp=0.25))
    return path


@pytest.mark.slow
def test_two_runs_into_one_folder_the_second_refuses_at_once_and_the_first_completes(tmp_path):
    import time

    slide = _synthetic_slide(tmp_path / "node.tif")
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "napari_lymphmet.cli", "-q", "predict", str(slide), "-o",
                              str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = out / ".lymphmet.lock"
    deadline = time.monotonic() + 60
    while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.1)
    start = time.monotonic()
    second = run_cli("predict", str(slide), "-o", str(out))
    assert second.returncode == 2 and time.monotonic() - start < 20
    (line,) = second.stderr.strip().splitlines()
    assert line.startswith(f"error: {out}: another lymphmet run (pid {first.pid})"), line
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-2000:]
    info = json.loads((out / "heatmap.json").read_text())
    assert info["complete"] is True and json.loads(stdout.strip().splitlines()[-1])["slides"]


@pytest.mark.slow
def test_sigterm_stops_predict_like_ctrl_c_and_the_rerun_resumes(tmp_path, gigapixel_synthetic):
    import signal

    out = tmp_path / "out"
    # A stride of a quarter patch: 16 times the cells, so the run is still going when the signal comes.
    argv = [sys.executable, "-m", "napari_lymphmet.cli", "--events", "predict", str(gigapixel_synthetic), "-o",
            str(out), "--stride", "24"]

    def run_until_cells() -> tuple[subprocess.Popen, dict]:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in proc.stdout:
            event = json.loads(line)
            if event.get("event") == "progress":
                proc.send_signal(signal.SIGTERM)  # what a scheduler or systemctl sends
                return proc, event
        raise AssertionError(proc.stderr.read())

    proc, first = run_until_cells()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "error: interrupted"
    assert (out / ".heatmap.partial.zarr").is_dir() and not (out / "heatmap.tif").exists()
    proc, again = run_until_cells()
    proc.communicate(timeout=120)
    assert again["done"] >= first["done"] + 64  # the checkpoint's cells, then a batch of its own


def test_a_cancel_that_comes_after_the_child_finished_reports_done_not_cancelled():
    """Cancel pressed as the job ends: its results are whole, so the widget must not call them cancelled."""
    import time

    from napari_lymphmet.workflows.background import BackgroundCommand

    job = BackgroundCommand(["models"]).start()
    deadline = time.monotonic() + 120
    while job._proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    job.cancel()
    result = job.wait()
    assert result.ok and not result.cancelled and result.summary["default"] == "lymph-node-10x"


def test_cancel_stops_a_child_that_started_with_sigint_ignored(tmp_path, gigapixel_synthetic):
    """napari started from a background job passes SIGINT ignored to its children: Cancel must still stop them."""
    import signal
    import time

    from napari_lymphmet.workflows.background import BackgroundCommand

    job = BackgroundCommand(["predict", str(gigapixel_synthetic), "-o", str(tmp_path / "out"), "--stride", "24"])
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        job.start()
    finally:
        signal.signal(signal.SIGINT, previous)
    first = next(e for e in job.events() if e.get("event") == "progress")
    asked = time.monotonic()
    job.cancel()
    result = job.wait()
    assert result.cancelled and result.returncode == 130 and time.monotonic() - asked < 20, first
    assert (tmp_path / "out" / ".heatmap.partial.zarr").is_dir() and not (tmp_path / "out" / "heatmap.tif").exists()
