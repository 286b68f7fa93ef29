"""CAMELYON16 evaluation: hand-built cases, an independent reimplementation, files, CLI."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lymphmet.annotations import Annotation, write_asap_xml
from napari_lymphmet.errors import InputError
from napari_lymphmet.evaluation import (
    EVAL_DOWNSAMPLE,
    EvaluationWarning,
    evaluation_mask,
    froc,
    froc_score,
    itc_labels,
    read_detections,
    score_slide,
    slide_auc,
)

from .conftest import run_main

MPP = 0.243
SHAPE = (400, 400)  # mask px at downsample 32: a 12 800 px slide


def disc(cx_um: float, cy_um: float, diameter_um: float) -> Annotation:
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    r = diameter_um / 2 / MPP
    return Annotation(np.column_stack([cx_um / MPP + r * np.cos(t), cy_um / MPP + r * np.sin(t)]))


def at(x_um: float, y_um: float, conf: float) -> list[float]:
    return [conf, x_um / MPP, y_um / MPP]


def slide(name, lesions, detections):
    mask = evaluation_mask(lesions, SHAPE, MPP) if lesions else None
    itc = itc_labels(mask, MPP) if mask is not None else set()
    return score_slide(name, np.array(detections, float).reshape(-1, 3), mask, itc)


def test_two_lesions_50um_apart_merge_into_one():
    a, b = disc(500, 1000, 400), disc(950, 1000, 400)  # edges 50 µm apart
    mask = evaluation_mask([a, b], SHAPE, MPP)
    assert mask.max() == 1
    far = evaluation_mask([a, disc(1100, 1000, 400)], SHAPE, MPP)  # 200 µm apart: two lesions
    assert far.max() == 2


@pytest.mark.parametrize("hit", [True, False])
def test_a_150um_lesion_is_an_itc_and_ignored_hit_or_missed(hit):
    big, small = disc(800, 800, 600), disc(2000, 2000, 150)
    mask = evaluation_mask([big, small], SHAPE, MPP)
    assert mask.max() == 2 and len(itc_labels(mask, MPP)) == 1
    detections = [at(800, 800, 0.9)] + ([at(2000, 2000, 0.8)] if hit else [])
    result = slide("s", [big, small], detections)
    assert (result.lesions, result.itc, result.tp, len(result.fp_probs)) == (1, 1, 1, 0)


def test_duplicate_hits_on_one_lesion_count_once():
    result = slide("s", [disc(800, 800, 600)], [at(800, 800, 0.6), at(820, 790, 0.9), at(790, 810, 0.7)])
    assert result.tp == 1 and result.fp_probs == [] and result.tp_probs.tolist() == pytest.approx([0.9])


def test_every_detection_on_a_normal_slide_is_a_false_positive():
    result = slide("n", [], [at(100, 100, 0.3), at(800, 800, 0.9)])
    assert result.fp_probs == [0.3, 0.9] and result.lesions == 0


def test_a_perfect_detector_scores_one():
    lesions = [disc(800, 800, 600), disc(2000, 1500, 500), disc(2500, 500, 150)]  # the last is an ITC
    results = [slide("t", lesions, [at(800, 800, 0.9), at(2000, 1500, 0.7)]), slide("n", [], [])]
    fps, sens = froc(results)
    score, at_rates = froc_score(fps, sens)
    assert score == 1.0 and set(at_rates.values()) == {1.0}


def test_the_official_rule_drops_the_smallest_pooled_value():
    # No zero in the pool (no miss, no ITC, no FP): the weakest hit's level is skipped.
    fps, sens = froc([slide("t", [disc(800, 800, 600), disc(2000, 1500, 500)],
                            [at(800, 800, 0.9), at(2000, 1500, 0.7)])])
    assert fps.tolist() == [0.0, 0.0] and sens.tolist() == [0.5, 0.0]


def test_fps_outranking_tps_below_a_quarter_fp_per_slide_interpolate_exactly():
    lesions = [disc(800, 800, 600), disc(2000, 1500, 500), disc(2800, 2800, 500)]
    tumor = slide("t", lesions, [at(800, 800, 0.3), at(2000, 1500, 0.2)])  # third lesion missed
    normals = [slide(f"n{i}", [], [at(100, 100, 0.9)] if i == 0 else [at(100, 100, 0.8)] if i == 1 else [])
               for i in range(9)]
    fps, sens = froc([tumor, *normals])  # 10 slides, 2 FPs: 0.2 FP/slide at most
    np.testing.assert_allclose(fps, [0.2, 0.2, 0.2, 0.1, 0.0])
    np.testing.assert_allclose(sens, [2 / 3, 1 / 3, 0, 0, 0])
    score, at_rates = froc_score(fps, sens)
    assert score == pytest.approx(2 / 3) and at_rates["0.25"] == pytest.approx(2 / 3)


def _reference_froc(slides_data):
    """Straight from the rules, with loops: (fps, sens) per the official script."""
    fp_all, tp_all, n_lesions = [], [], 0
    for mask, itc, detections in slides_data:
        if mask is None:
            for d in detections:
                fp_all.append(d[0])
            continue
        best = [0.0] * int(mask.max())
        for conf, x, y in detections:
            label = mask[int(y / 32), int(x / 32)]
            if label == 0:
                fp_all.append(conf)
            elif label not in itc:
                if conf > best[label - 1]:
                    best[label - 1] = conf
        tp_all += best
        n_lesions += int(mask.max()) - len(itc)
    levels = sorted(set(fp_all + tp_all))
    fps, tps = [], []
    for t in levels[1:]:
        fps.append(sum(1 for p in fp_all if p >= t))
        tps.append(sum(1 for p in tp_all if p >= t))
    fps.append(0)
    tps.append(0)
    fps = [f / len(slides_data) for f in fps]
    sens = [t / n_lesions for t in tps]
    total = 0.0
    for rate in (0.25, 0.5, 1, 2, 4, 8):
        total += float(np.interp(rate, fps[::-1], sens[::-1]))
    return total / 6


def test_random_detections_match_a_straightforward_reimplementation():
    rng = np.random.default_rng(5)
    for trial in range(5):
        data, evaluations = [], []
        for s in range(4):
            lesions = [disc(*rng.uniform(300, 2800, 2), rng.uniform(100, 700)) for _ in range(rng.integers(0, 4))]
            dets = np.column_stack([rng.random(30).round(2), rng.uniform(0, 12_799, 30), rng.uniform(0, 12_799, 30)])
            # Some detections aimed at the lesions, so there are hits.
            for a in lesions[:2]:
                c = a.exterior.mean(axis=0)
                dets = np.vstack([dets, [rng.random(), c[0], c[1]]])
            mask = evaluation_mask(lesions, SHAPE, MPP) if lesions else None
            itc = itc_labels(mask, MPP) if mask is not None else set()
            data.append((mask, itc, dets.tolist()))
            evaluations.append(score_slide(f"s{s}", dets, mask, itc))
        if sum(e.lesions for e in evaluations) == 0:
            continue
        ours, _ = froc_score(*froc(evaluations))
        assert ours == pytest.approx(_reference_froc(data), abs=1e-9), trial


def test_slide_auc_hand_checked():
    scores = {"a": 0.9, "b": 0.4, "c": 0.35, "d": 0.8, "e": 0.1}
    truth = {"a": True, "b": False, "c": True, "d": False, "e": False}
    # Pairs (tumor > normal): a beats b, d, e (3); c beats e (1) of 6 pairs.
    assert slide_auc(scores, truth) == pytest.approx(4 / 6)
    assert slide_auc({"a": 0.5}, {"a": True}) is None


def test_detection_files_edge_cases(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert read_detections(empty).shape == (0, 3)
    header = tmp_path / "header.csv"
    header.write_text("Confidence,X coordinate,Y coordinate\n0.5,100,200\n")
    with pytest.warns(EvaluationWarning, match=r"header.csv:1: a header row"):
        assert read_detections(header).tolist() == [[0.5, 100, 200]]
    outside = tmp_path / "outside.csv"
    outside.write_text("0.5,-3,200\n0.7,100,200\n0.6,99999,5\n")
    with pytest.warns(EvaluationWarning, match=r"outside.csv:1: .* outside"):
        assert read_detections(outside, dimensions=(5000, 5000)).tolist() == [[0.7, 100, 200]]
    for name, text, needle in [("nan.csv", "0.5,100,200\nnan,1,2\n", "nan.csv:2"),
                               ("short.csv", "0.5,100\n", "short.csv:1"),
                               ("words.csv", "0.5,100,200\nhello,x,y\n", "words.csv:2")]:
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(InputError, match=needle):
            read_detections(path)


def test_cli_evaluate_end_to_end(tmp_path, capsys):
    truth, dets = tmp_path / "truth", tmp_path / "dets"
    truth.mkdir()
    dets.mkdir()
    lesion = disc(800, 800, 600)
    write_asap_xml(truth / "tumor_001.xml", [lesion])
    (dets / "tumor_001.csv").write_text(f"0.9,{800 / MPP:.0f},{800 / MPP:.0f}\n0.2,100,100\n")
    (dets / "normal_001.csv").write_text("0.3,500,500\n")
    (tmp_path / "scores.csv").write_text("slide,score\ntumor_001,0.9\nnormal_001,0.3\n")
    code, summary, err = run_main(capsys, "evaluate", "--detections", str(dets), "--truth", str(truth),
                                  "--scores", str(tmp_path / "scores.csv"))
    assert code == 0, err
    assert summary["slides"] == 2 and summary["lesions"] == 1 and summary["itc_lesions"] == 0
    assert summary["tp"] == 1 and summary["fp"] == 2 and summary["slide_auc"] == 1.0
    assert summary["froc"] == pytest.approx(1.0)  # the hit outranks both FPs
    assert set(summary["sensitivity_at"]) == {"0.25", "0.5", "1", "2", "4", "8"}
    assert (dets / "froc.png").exists()
    (dets / "broken.csv").write_text("0.5,1\n")
    code, _, err = run_main(capsys, "evaluate", "--detections", str(dets), "--truth", str(truth))
    assert code == 2 and "broken.csv:1" in err
    assert EVAL_DOWNSAMPLE == 32


def test_cli_evaluate_says_when_the_official_rule_lowers_froc(tmp_path, capsys):
    """The demo's case: three lesions, each hit once, no false positive.

    The official script drops the lowest confidence as a threshold, so the
    weakest hit never counts: FROC 2/3, and 1.0 over all thresholds.
    """
    truth, dets = tmp_path / "truth", tmp_path / "dets"
    truth.mkdir()
    dets.mkdir()
    centres = [(800, 800), (3000, 800), (800, 3000)]
    write_asap_xml(truth / "test.xml", [disc(x, y, 500) for x, y in centres])
    (dets / "test.csv").write_text("".join(f"{p},{x / MPP:.0f},{y / MPP:.0f}\n"
                                           for p, (x, y) in zip((0.97, 0.93, 0.91), centres)))
    (dets / "normal.csv").write_text("")
    code, summary, err = run_main(capsys, "evaluate", "--detections", str(dets), "--truth", str(truth))
    assert code == 0, err
    assert (summary["tp"], summary["fp"], summary["lesions"]) == (3, 0, 3)
    assert summary["froc"] == pytest.approx(2 / 3) and summary["froc_all_thresholds"] == pytest.approx(1.0)
    assert "official" in summary["froc_note"] and "1.000" in summary["froc_note"]
    # The figure a reader judges the model by: axes titled, ticks labelled, the score in the title.
    figure = _froc_figure_of(dets, truth)
    ax = figure.axes[0]
    assert ax.get_xscale() == "log" and ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 1
    assert ax.get_xlabel() == "mean false positives per slide" and ax.get_ylabel() == "lesion sensitivity"
    assert "0.667" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()][:2] == ["1/8", "1/4"]
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"official operating points", "all thresholds"}


def _froc_figure_of(dets, truth):
    from napari_lymphmet.evaluation import evaluate

    return evaluate(dets, truth)[1].figure()


def test_evaluate_sets_each_nodes_category_against_the_truths_largest_outline(tmp_path, capsys):
    """Where predict wrote the detections, its node category is compared with the truth's (issue 31)."""
    import json

    truth, dets = tmp_path / "truth", tmp_path / "predictions"
    truth.mkdir()
    # Largest outlines: a 0.6 mm disc (micro), a 3 mm disc (macro), a 0.1 mm disc (itc); one slide without any.
    cases = {"node_micro": (600, "micro"), "node_macro": (3000, "macro"), "node_itc": (100, "macro"),
             "node_negative": (None, "negative")}
    for name, (diameter, predicted) in cases.items():
        folder = dets / name
        folder.mkdir(parents=True)
        (folder / "detections.csv").write_text(f"0.9,{2000 / MPP:.0f},{2000 / MPP:.0f}\n")
        (folder / "heatmap.json").write_text(json.dumps({"category": predicted}))
        if diameter:
            write_asap_xml(truth / f"{name}.xml", [disc(2000, 2000, diameter), disc(700, 700, 120)])
    code, summary, err = run_main(capsys, "evaluate", "--detections", str(dets), "--truth", str(truth),
                                  "--mpp", str(MPP))
    assert code == 0, err
    by_slide = {s["slide"]: s for s in summary["per_slide"]}
    assert {name: by_slide[name]["truth_category"] for name in cases} == {
        "node_micro": "micro", "node_macro": "macro", "node_itc": "itc", "node_negative": "negative"}
    assert summary["node_categories"]["itc"]["macro"] == 1 and summary["node_categories"]["macro"]["macro"] == 1
    assert summary["categories_agree"] == pytest.approx(3 / 4)
