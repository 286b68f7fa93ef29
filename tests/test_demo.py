"""``lymphmet demo`` end to end, on small slides."""

from __future__ import annotations

import pytest

from .conftest import run_main


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_and_reports(tmp_path, capsys):
    code, summary, err = run_main(capsys, "demo", "-o", str(tmp_path / "demo"), "--size", "6144",
                                  "--epochs", "4")
    assert code == 0, err[-3000:]
    for key in ("heatmap_auc", "froc", "slide_auc", "sensitivity_at", "heatmap", "overlay", "froc_png",
                "report", "model"):
        assert key in summary
    assert summary["heatmap_auc"] > 0.9 and summary["lesions"] >= 1
    report = (tmp_path / "demo" / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 2 and "FROC" in report
    assert "1/6 synthetic slides" in err and "6/6 CAMELYON16 evaluation" in err
