"""The pathologist's reading (issue 31): node categories and pN stages by CAMELYON17's rules, and `lymphmet stage`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from napari_lymphmet.inference import lesion_category, node_category, patient_of, pn_stage


@pytest.mark.parametrize(("mm", "category"), [
    (0.0, "itc"), (0.2, "itc"), (0.2001, "micro"), (2.0, "micro"), (2.0001, "macro"), (35.0, "macro"),
    (None, "unknown"), (float("nan"), "unknown"),
])
def test_a_metastasis_is_categorised_by_its_longest_diameter_bounds_in_the_smaller_class(mm, category):
    assert lesion_category(mm) == category


def test_a_node_takes_its_largest_metastasis_and_an_unmeasured_one_makes_it_unknown_unless_macro():
    assert node_category([]) == "negative"
    assert node_category([0.1, 0.15]) == "itc"
    assert node_category([0.1, 1.5, 0.3]) == "micro"
    assert node_category([0.1, 2.5]) == "macro"
    assert node_category([0.1, None]) == "unknown"  # the unmeasured one may be larger
    assert node_category([3.0, None]) == "macro"  # nothing is above macro


@pytest.mark.parametrize(("nodes", "stage"), [
    ([], "pN0"),
    (["negative"] * 5, "pN0"),
    (["negative", "itc", "negative"], "pN0(i+)"),
    (["itc", "micro", "negative"], "pN1mi"),
    (["micro"] * 6, "pN1mi"),  # however many: no macro-metastasis
    (["macro", "negative"], "pN1"),
    (["macro", "micro", "micro", "itc"], "pN1"),  # 3 positive nodes: the edge of pN1; ITC nodes do not count
    (["macro", "micro", "micro", "micro"], "pN2"),  # 4 positive nodes
    (["macro"] * 9, "pN2"),
    (["macro"] * 10, "pN3"),
    (["negative", "unknown"], "unknown"),  # a failed slide is not a negative node
    (["macro", "unknown"], "pN1"),  # 2 positive at most: pN1 either way
    (["macro", "micro", "micro", "unknown"], "unknown"),  # 3 or 4 positive: pN1 or pN2
    (["macro", "micro", "micro", "micro", "unknown"], "pN2"),
])
def test_the_pn_stage_follows_camelyon17_at_every_edge(nodes, stage):
    assert pn_stage(nodes) == stage


def test_an_unknown_category_is_a_bug_not_a_stage():
    with pytest.raises(ValueError, match="unknown node category"):
        pn_stage(["large"])


def test_camelyon17_names_give_the_patient():
    assert patient_of("patient_004_node_4") == "patient_004"
    assert patient_of("node_4") is None and patient_of("patient_004_node_4_extra") is None


def _cohort(tmp_path, rows):
    folder = tmp_path / "predictions"
    folder.mkdir()
    with open(folder / "slides.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["slide", "path", "category", "status"])
        writer.writeheader()
        for slide, category, status in rows:
            writer.writerow({"slide": slide, "path": f"/x/{slide}.tif", "category": category, "status": status})
    return folder


def run(*args):
    return subprocess.run([sys.executable, "-m", "napari_lymphmet.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_stage_groups_camelyon17_names_and_a_failed_slide_is_unknown(tmp_path):
    folder = _cohort(tmp_path, [
        ("patient_001_node_0", "negative", "ok"), ("patient_001_node_1", "itc", "ok"),
        ("patient_002_node_0", "macro", "ok"), ("patient_002_node_3", "micro", "ok"),
        ("patient_003_node_2", "negative", "ok"), ("patient_003_node_4", "negative", "x.tif: cannot read"),
    ])
    done = run("stage", str(folder), "-o", str(tmp_path / "stages.csv"))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["patients"] == {"patient_001": "pN0(i+)", "patient_002": "pN1", "patient_003": "unknown"}
    with open(tmp_path / "stages.csv", newline="") as f:
        rows = {row["patient"]: row for row in csv.DictReader(f)}
    assert list(rows["patient_002"]) == ["patient", "stage", "nodes", "nodes_positive", "nodes_macro",
                                          "nodes_micro", "nodes_itc", "nodes_unknown"]
    assert (rows["patient_002"]["nodes_positive"], rows["patient_002"]["nodes_macro"]) == ("2", "1")
    assert rows["patient_003"]["nodes_unknown"] == "1"


@pytest.mark.parametrize(("patients", "words"), [
    ("patient,slide\np1,node_a\np1,node_zz\n", "node_zz' was not predicted"),
    ("patient,slide\np1,\n", "a row needs a patient and a slide"),
    ("who,what\np1,node_a\n", "needs the columns patient,slide"),
])
def test_a_bad_patients_table_is_one_line_naming_the_row(tmp_path, patients, words):
    folder = _cohort(tmp_path, [("node_a", "micro", "ok"), ("node_b", "negative", "ok")])
    table = tmp_path / "patients.csv"
    table.write_text(patients)
    done = run("stage", str(folder), "--patients", str(table), "-o", str(tmp_path / "stages.csv"))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and str(table) in lines[0] and words in lines[0], lines
    assert not (tmp_path / "stages.csv").exists()


def test_without_patients_slides_must_be_named_as_camelyon17_names_them(tmp_path):
    folder = _cohort(tmp_path, [("node_a", "micro", "ok")])
    done = run("stage", str(folder), "-o", str(tmp_path / "stages.csv"))
    assert done.returncode == 2 and "node_a: not named patient_NNN_node_N" in done.stderr
    done = run("stage", str(tmp_path), "-o", str(tmp_path / "stages.csv"))
    assert done.returncode == 2 and "no slides.csv here" in done.stderr


def test_quadratic_kappa_against_a_hand_computed_case():
    from napari_lymphmet.evaluation import quadratic_kappa

    # O = [[1,1,0],[0,1,0],[1,0,0]]; E = margins (2,1,1) x (2,2,0) / 4; w = (i-j)²/4: 1 - 1.25 / 1.0.
    assert quadratic_kappa(list("aabc"), list("abba"), labels="abc") == pytest.approx(-0.25)
    assert quadratic_kappa(["pN0", "pN1", "pN2"], ["pN0", "pN1", "pN2"]) == 1.0
    with pytest.raises(ValueError, match="not one of"):
        quadratic_kappa(["pN0"], ["pN9"])


def test_stage_reports_kappa_and_node_confusion_against_truth_tables(tmp_path):
    folder = _cohort(tmp_path, [
        ("patient_001_node_0", "negative", "ok"), ("patient_001_node_1", "itc", "ok"),
        ("patient_002_node_0", "macro", "ok"), ("patient_002_node_3", "micro", "ok"),
        ("patient_003_node_0", "micro", "ok"),
    ])
    stages, nodes = tmp_path / "stages_truth.csv", tmp_path / "nodes_truth.csv"
    stages.write_text("patient,stage\npatient_001,pN0(i+)\npatient_002,pN1\npatient_003,pN0\n")
    nodes.write_text("slide,category\npatient_001_node_1.tif,itc\npatient_002_node_0,macro\npatient_003_node_0,negative\n")
    done = run("stage", str(folder), "-o", str(tmp_path / "stages.csv"), "--truth", str(stages),
               "--node-truth", str(nodes))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["patients_scored"] == 3 and 0 < summary["kappa"] < 1  # one patient one step off
    assert summary["node_confusion"]["negative"]["micro"] == 1 and summary["node_confusion"]["macro"]["macro"] == 1
    assert summary["node_accuracy"] == pytest.approx(2 / 3)
    stages.write_text("patient,stage\npatient_009,pN1\n")
    done = run("stage", str(folder), "-o", str(tmp_path / "s2.csv"), "--truth", str(stages))
    assert done.returncode == 2 and "patient 'patient_009' has no predicted slides" in done.stderr
    assert not (tmp_path / "s2.csv").exists()
